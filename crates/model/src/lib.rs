//! Shared vocabulary of Entente: identifiers, positions and the clock.
//!
//! Depends on nothing of ours, so every other crate can speak these types.

mod clock;
mod eui;
mod flow;
mod member;
mod position;
pub mod settings;
pub mod timestamp;

pub use clock::{Clock, ManualClock, OffsetClock, SharedClock, SystemClock};
pub use eui::{DevAddr, DevEui, Eui64, GatewayEui, JoinEui};
pub use flow::Flow;
pub use member::MemberId;
pub use position::Position;

/// Why a value from outside (a file, a peer, an HTTP client) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{what} must be {expected} hexadecimal digits, got {got:?}")]
    BadHex {
        what: &'static str,
        expected: usize,
        got: String,
    },
    #[error("member id {0:?} must be 1 to 64 characters among a-z, 0-9 and '-', not starting with '-'")]
    BadMemberId(String),
    #[error("{0}")]
    BadPosition(String),
}
