//! `/entente/roaming/3` and `/entente/sync/1`: the messages peers send each other. They
//! live in `entente-wire` (no RocksDB, no libp2p, so the fuzz targets build them alone).

pub use entente_wire::roaming::*;
pub use entente_wire::sync::*;
