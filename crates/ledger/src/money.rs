//! Money in integer euro cents, and the one rounding rule: half away from zero, applied
//! once per invoice line (never per device, so a million small amounts do not drift).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl Cents {
    pub fn euros(e: i64) -> Cents {
        Cents(e.saturating_mul(100))
    }

    /// An amount computed wider, held at the bounds of what a cent count can say (a
    /// policy's prices are bounded far below them; this keeps a sum from wrapping).
    pub fn clamped(wide: i128) -> Cents {
        Cents(wide.clamp(i64::MIN.into(), i64::MAX.into()) as i64)
    }

    /// `self x num / den`, rounded half away from zero; `den` must not be 0.
    pub fn mul_div(self, num: i64, den: i64) -> Cents {
        Cents::clamped(round_div(i128::from(self.0) * i128::from(num), i128::from(den)))
    }

    /// `self x rate`, the rate in basis points (2 000 = 20 %).
    pub fn percent_bp(self, bp: u32) -> Cents {
        self.mul_div(bp as i64, 10_000)
    }
}

/// `n / d` rounded half away from zero.
pub fn round_div(n: i128, d: i128) -> i128 {
    if d == 0 {
        return 0;
    }
    let (n, d) = if d < 0 { (-n, -d) } else { (n, d) };
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

impl std::ops::Add for Cents {
    type Output = Cents;
    fn add(self, o: Cents) -> Cents {
        Cents(self.0.saturating_add(o.0))
    }
}

impl std::ops::Sub for Cents {
    type Output = Cents;
    fn sub(self, o: Cents) -> Cents {
        Cents(self.0.saturating_sub(o.0))
    }
}

impl std::ops::AddAssign for Cents {
    fn add_assign(&mut self, o: Cents) {
        self.0 = self.0.saturating_add(o.0);
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(it: I) -> Cents {
        Cents::clamped(it.map(|c| i128::from(c.0)).sum())
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02} EUR", a / 100, a % 100)
    }
}

/// Splits `total` by integer weights so the parts sum exactly to it (largest remainder).
pub fn split(total: Cents, weights: &[u64]) -> Vec<Cents> {
    let sum: u128 = weights.iter().map(|w| *w as u128).sum();
    if sum == 0 {
        return vec![Cents(0); weights.len()];
    }
    let t = total.0 as i128;
    let mut parts: Vec<(usize, i128, i128)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let exact = t * *w as i128;
            (i, exact.div_euclid(sum as i128), exact.rem_euclid(sum as i128))
        })
        .collect();
    let mut left = t - parts.iter().map(|p| p.1).sum::<i128>();
    parts.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    for p in parts.iter_mut() {
        if left <= 0 {
            break;
        }
        p.1 += 1;
        left -= 1;
    }
    parts.sort_by_key(|p| p.0);
    parts.into_iter().map(|p| Cents(p.1 as i64)).collect()
}
