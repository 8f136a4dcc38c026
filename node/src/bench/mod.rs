//! `entente bench ...`: benchmarks that print their figures as JSON. Everything they
//! measure is the real code path (real sockets, real RocksDB); nothing is mocked.

pub mod billing;
pub mod delivery;
pub mod federation;
pub mod ingest;
pub mod joins;
pub mod restart;
pub mod roaming;
pub mod routing;
pub mod sync;

pub use billing::{BillingArgs, billing};
pub use delivery::{DeliveryArgs, delivery};
pub use federation::{FederationArgs, federation};
pub use ingest::{IngestArgs, IngestNodeArgs, ingest, ingest_node};
pub use joins::{JoinsArgs, joins};
pub use restart::{RestartArgs, restart};
pub use roaming::{RoamingArgs, roaming};
pub use routing::routing;
pub use sync::{SyncArgs, sync};
