//! Usage, billing and the ledger: counted facts on both sides, the conventions' billing
//! rules in integer cents, and an append-only, hash-chained, signed record per agreement
//! that either party can verify offline.

pub mod accounts;
pub mod billing;
pub use entente_documents::chain;
pub mod money;
pub mod pair;
pub mod policy;
pub mod sharing;
pub use entente_documents::statement;
pub mod store;
pub mod usage;

pub use accounts::{DeviceDirectory, DeviceFacts};
pub use billing::{DeviceUse, Invoice, Line};
pub use money::Cents;
pub use policy::BillingPolicy;
pub use store::{Ledger, LedgerError};
