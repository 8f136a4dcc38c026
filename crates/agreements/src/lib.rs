//! Cooperation conventions (DOMAIN.md "The roaming agreement", "A second agreement
//! model") as data: the model, the lifecycle with its deadlines, signatures by both
//! parties over the exact stored bytes, signed acts replayed into the state, replication
//! between the parties, the committee review, and the roaming policy the network enforces.

pub mod act;
pub mod book;
pub mod dossier;
pub mod lifecycle;
pub mod model;
pub mod policy;
pub mod review;
pub mod sig;
pub mod signing;

pub use act::{Act, ActKind, SignedAct};
pub use book::{Book, BookError, SyncMsg, View};
pub use dossier::{Dossier, DossierError};
pub use lifecycle::{AccessRequest, AccessState, LifecycleError, PendingAmendment, Record, State};
pub use model::*;
pub use policy::AgreementPolicy;
pub use review::{Review, SignedReview};
pub use signing::{SignError, SignedAgreement};
