//! The Semtech UDP packet-forwarder protocol (GWMP v1 and v2, PROTOCOL.TXT of the packet
//! forwarder) with nothing but the bytes: the datagram codec (`protocol`) and the JSON
//! objects a forwarder sends and receives (`json`). Everything here parses untrusted
//! input without panicking; the gateway server (`entente-gateway`) re-exports both
//! modules and does the rest (registry, metrics, sockets, downlinks).

pub mod json;
pub mod protocol;

pub use protocol::DatagramError;
