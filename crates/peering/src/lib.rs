//! Federation over libp2p: the signed roster and admission, the routing table, the
//! roaming protocol (`/entente/roaming/1`) on the visited and the home side.

pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod roster;
pub mod routing;
pub mod service;
pub mod token;

pub use policy::{FrameFacts, Refusal, RoamingPolicy, RosterPolicy, Terms};
pub use roster::{Member, MemberKind, Roster, RosterError};
pub use routing::RoutingTable;
pub use service::{
    Carried, CarriedFrame, PeerStatus, Peering, PeeringConfig, PeeringError, RefusalCount, Started,
    SyncHandler, UsageHook,
};
