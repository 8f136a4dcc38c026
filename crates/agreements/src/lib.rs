//! Cooperation conventions (DOMAIN.md "The roaming agreement", "A second agreement
//! model") as data: the model, the lifecycle with its deadlines, signatures by both
//! parties over the exact stored bytes, and the roaming policy the network enforces.

pub mod lifecycle;
pub mod model;
pub mod policy;
pub mod signing;

pub use lifecycle::{LifecycleError, Record, State};
pub use model::*;
pub use policy::AgreementPolicy;
pub use signing::{SignError, SignedAgreement};
