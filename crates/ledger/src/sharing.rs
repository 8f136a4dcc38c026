//! Cost-sharing keys syndicates use (002): pro rata of deployments, fixed percentage
//! keys, and rate x quantity clamped between a floor and a ceiling. Parts always sum to
//! the total exactly (largest remainder).

use crate::money::{Cents, round_div, split};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SharingError {
    #[error("percentage keys sum to {0} basis points, not 10 000")]
    KeysNot100(u64),
    #[error("the floor {0} is above the ceiling {1}")]
    FloorAboveCeiling(Cents, Cents),
}

/// Running costs shared pro rata of each member's deployments (gateways, devices...).
pub fn pro_rata(total: Cents, deployments: &[u64]) -> Vec<Cents> {
    split(total, deployments)
}

/// Fixed keys in basis points (e.g. 40 % / 40 % / 20 % = 4 000, 4 000, 2 000).
pub fn fixed_keys(total: Cents, keys_bp: &[u32]) -> Result<Vec<Cents>, SharingError> {
    let sum: u64 = keys_bp.iter().map(|k| *k as u64).sum();
    if sum != 10_000 {
        return Err(SharingError::KeysNot100(sum));
    }
    Ok(split(
        total,
        &keys_bp.iter().map(|k| *k as u64).collect::<Vec<_>>(),
    ))
}

/// `rate x quantity`, the rate in micro-euros (0.033 EUR = 33 000), rounded to the cent,
/// then clamped to [floor, ceiling].
pub fn clamped(
    rate_micro_eur: i64,
    quantity: u64,
    floor: Cents,
    ceiling: Cents,
) -> Result<Cents, SharingError> {
    if floor > ceiling {
        return Err(SharingError::FloorAboveCeiling(floor, ceiling));
    }
    let cents = round_div(rate_micro_eur as i128 * quantity as i128, 10_000);
    Ok(Cents(cents.clamp(floor.0 as i128, ceiling.0 as i128) as i64))
}
