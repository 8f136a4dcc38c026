//! Federation over libp2p: the signed roster and admission, the routing table, the
//! roaming protocol (`/entente/roaming/3`) on the visited and the home side.

mod buffer;
mod client;
mod dispatch;
mod event_loop;
pub mod gateways;
mod home;
pub mod metrics;
mod peers;
pub mod policy;
pub mod protocol;
mod refusals;
pub use entente_documents::roster;
pub use entente_documents::routing;
pub mod service;
mod settings;
mod swarm;
pub mod sync;
pub mod token;
mod usage;
mod verdicts;
mod visited;

pub use policy::{FrameFacts, Refusal, RoamingPolicy, RosterPolicy, Terms};
pub use roster::{Member, MemberKind, Roster, RosterError};
pub use routing::RoutingTable;
pub use service::{
    Built, Carried, CarriedFrame, Handlers, PeerStatus, Peering, PeeringConfig, PeeringError, RefusalCount,
    Started, SyncHandler, UsageHook,
};
pub use sync::{SyncSession, SyncStats};
