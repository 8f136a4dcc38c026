//! The federation's settings, the `[federation]` section of `node.toml`: defined in
//! `entente_settings` (a leaf the fuzz target reads node.toml with), used from here.

pub use entente_settings::peering::PeeringConfig;
