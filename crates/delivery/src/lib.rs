//! Delivery to applications (DOMAIN.md "Delivery to applications"): HTTP push with
//! retries, REST pull and file push per device group, payload decoders, a 48 h buffer
//! that survives restarts.

mod allow;
pub mod decoders;
pub mod message;
pub mod metrics;
pub mod recipient;
pub mod service;
mod settings;
pub mod tables;

pub use recipient::{FileFormat, NewRecipient, Recipient, RecipientKind};
pub use service::{Delivery, DeliveryConfig, DeliveryError};
