//! The gateway side's settings, the `[gateway]` section of `node.toml`: defined in
//! `entente_settings` (a leaf the fuzz target reads node.toml with), used from here.

pub use entente_settings::gateway::ServerConfig;
