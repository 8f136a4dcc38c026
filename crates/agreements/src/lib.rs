//! Cooperation conventions (DOMAIN.md "The roaming agreement", "A second agreement
//! model") as data: the model, the lifecycle with its deadlines, signatures by both
//! parties over the exact stored bytes, signed acts replayed into the state, replication
//! between the parties, the committee review, and the roaming policy the network enforces.

pub use entente_documents::act;
pub mod book;
pub use entente_documents::dossier;
pub use entente_documents::lifecycle;
pub use entente_documents::model;
pub mod policy;
pub use entente_documents::review;
pub use entente_documents::sig;
pub use entente_documents::signing;

pub use act::{Act, ActKind, SignedAct};
pub use book::{Book, BookError, SyncMsg, View};
pub use dossier::{Dossier, DossierError};
pub use lifecycle::{AccessRequest, AccessState, LifecycleError, PendingAmendment, Record, State};
pub use model::*;
pub use policy::AgreementPolicy;
pub use review::{Review, SignedReview};
pub use signing::{SignError, SignedAgreement};
