//! Delivery's settings, the `[delivery]` section of `node.toml`: defined in
//! `entente_settings` (a leaf the fuzz target reads node.toml with), used from here.

pub use entente_settings::delivery::DeliveryConfig;
