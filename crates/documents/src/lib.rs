//! What federation members sign and send each other, as data with its parsing and
//! verification: the roster (and the routing table it implies), agreements with their
//! signatures, acts, dossiers and committee reviews, ledger records and usage
//! statements, and the sync messages of channels `agreements` and `ledger`. Pure: no
//! store, no runtime, so the fuzz targets build it alone.

pub mod act;
pub mod book_sync;
pub mod chain;
pub mod dossier;
pub mod ledger_sync;
pub mod lifecycle;
pub mod model;
pub mod review;
pub mod roster;
pub mod routing;
pub mod sig;
pub mod signing;
pub mod statement;
pub mod usage;

pub use act::{Act, ActKind, SignedAct};
pub use dossier::{Dossier, DossierError};
pub use lifecycle::{AccessRequest, AccessState, LifecycleError, PendingAmendment, Record, State};
pub use model::*;
pub use review::{Review, SignedReview};
pub use signing::{SignError, SignedAgreement};
