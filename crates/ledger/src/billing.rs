//! The conventions' billing rules as functions of counted facts: the yearly `nbO x taO`
//! fee, the catalogue billed monthly pro rata, counting units, subscription, penalties,
//! VAT. Money is integer cents; each line is rounded once, half away from zero, and VAT
//! is computed once on the total excluding VAT.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use entente_model::DevEui;
use serde::{Deserialize, Serialize};

use crate::money::{Cents, round_div};
use crate::policy::{BillingPolicy, Rule};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BillingError {
    #[error("policy {0} is not a {1} rule")]
    WrongRule(String, &'static str),
    #[error("no price for service {service:?} and use case {use_case:?} in policy {policy}")]
    NoPrice {
        policy: String,
        service: String,
        use_case: String,
    },
    #[error("year {0} is outside the calendar")]
    BadYear(i32),
}

/// What billing needs to know of one device, from the usage counters and its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceUse {
    pub dev_eui: DevEui,
    pub use_case: String,
    /// Measured quantities (5 per counting unit).
    pub quantities: u32,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub service: String,
    pub use_case: String,
    pub description: String,
    /// Objects, or unit-months, as the description says.
    pub quantity: u64,
    /// Per object and year, or per unit and year.
    pub unit_price: Cents,
    pub amount: Cents,
}

/// Invoice data with every field the conventions list (004 annex 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: String,
    pub agreement: String,
    pub policy: String,
    pub creditor: String,
    pub debtor: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub lines: Vec<Line>,
    pub amount_excl_vat: Cents,
    pub vat_rate_bp: u32,
    pub vat: Cents,
    pub amount_incl_vat: Cents,
    pub invoice_date: NaiveDate,
    pub due_date: NaiveDate,
}

/// Counting units of a device measuring `quantities` (one per `per_unit` started).
pub fn units(quantities: u32, per_unit: u32) -> u32 {
    quantities.max(1).div_ceil(per_unit.max(1))
}

fn month_index(t: DateTime<Utc>) -> i64 {
    t.year() as i64 * 12 + t.month0() as i64
}

/// Months of `year` billed for a device first heard at `first` and last heard at `last`:
/// from the first full month after the first communication to the month of the last one,
/// every started month due.
pub fn billable_months(first: DateTime<Utc>, last: DateTime<Utc>, year: i32) -> u32 {
    let from = (month_index(first) + 1).max(year as i64 * 12);
    let to = month_index(last).min(year as i64 * 12 + 11);
    (to - from + 1).max(0) as u32
}

fn year_bounds(year: i32) -> Result<(NaiveDate, NaiveDate), BillingError> {
    let s = NaiveDate::from_ymd_opt(year, 1, 1).ok_or(BillingError::BadYear(year))?;
    let e = NaiveDate::from_ymd_opt(year, 12, 31).ok_or(BillingError::BadYear(year))?;
    Ok((s, e))
}

/// Totals and VAT of a list of lines, with dates and payment terms.
#[allow(clippy::too_many_arguments)]
pub fn invoice(
    policy: &BillingPolicy,
    number: String,
    agreement: &str,
    debtor: &str,
    period: (NaiveDate, NaiveDate),
    lines: Vec<Line>,
    issued: DateTime<Utc>,
) -> Invoice {
    let excl: Cents = lines.iter().map(|l| l.amount).sum();
    let vat = excl.percent_bp(policy.vat_rate_bp);
    let invoice_date = issued.date_naive();
    Invoice {
        number,
        agreement: agreement.into(),
        policy: policy.id.clone(),
        creditor: policy.creditor.clone(),
        debtor: debtor.into(),
        period_start: period.0,
        period_end: period.1,
        lines,
        amount_excl_vat: excl,
        vat_rate_bp: policy.vat_rate_bp,
        vat,
        amount_incl_vat: excl + vat,
        invoice_date,
        due_date: invoice_date
            .checked_add_days(Days::new(policy.payment_days as u64))
            .unwrap_or(invoice_date),
    }
}

/// The yearly fee `nbO x taO` for `year`, on the objects declared on 1 January.
pub fn annual_declared(
    policy: &BillingPolicy,
    agreement: &str,
    debtor: &str,
    year: i32,
    declared_on_1_january: u64,
    issued: DateTime<Utc>,
) -> Result<Invoice, BillingError> {
    let Rule::AnnualDeclared {
        tariff_per_object_cents,
    } = policy.rule
    else {
        return Err(BillingError::WrongRule(policy.id.clone(), "annual_declared"));
    };
    let tao = Cents(tariff_per_object_cents);
    let line = Line {
        service: "network_access".into(),
        use_case: "all".into(),
        description: format!(
            "Redevance annuelle {year}: {declared_on_1_january} objets déclarés au 1er janvier x {tao}"
        ),
        quantity: declared_on_1_january,
        unit_price: tao,
        amount: Cents::clamped(i128::from(tao.0) * i128::from(declared_on_1_january)),
    };
    Ok(invoice(
        policy,
        format!("{agreement}/{year}"),
        agreement,
        debtor,
        year_bounds(year)?,
        vec![line],
        issued,
    ))
}

/// Unit-months per use case for one year, accumulated device by device, so a million
/// devices are billed in one pass without being held in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitMonths {
    pub year: i32,
    pub per_unit: u32,
    pub by_use_case: std::collections::BTreeMap<String, u64>,
    pub devices_billed: u64,
}

impl UnitMonths {
    pub fn new(policy: &BillingPolicy, year: i32) -> Result<UnitMonths, BillingError> {
        let Rule::Catalogue {
            quantities_per_unit, ..
        } = policy.rule
        else {
            return Err(BillingError::WrongRule(policy.id.clone(), "catalogue"));
        };
        Ok(UnitMonths {
            year,
            per_unit: quantities_per_unit,
            ..Default::default()
        })
    }

    pub fn add(&mut self, use_case: &str, quantities: u32, first: DateTime<Utc>, last: DateTime<Utc>) {
        let m = billable_months(first, last, self.year) as u64;
        if m == 0 {
            return;
        }
        let um = m.saturating_mul(units(quantities, self.per_unit) as u64);
        match self.by_use_case.get_mut(use_case) {
            Some(v) => *v = v.saturating_add(um),
            None => {
                self.by_use_case.insert(use_case.to_string(), um);
            }
        }
        self.devices_billed += 1;
    }
}

/// The catalogue invoice from accumulated unit-months: one line per service and use case,
/// `price x unit-months / 12` rounded once.
pub fn catalogue_invoice(
    policy: &BillingPolicy,
    agreement: &str,
    debtor: &str,
    services: &[&str],
    sums: &UnitMonths,
    issued: DateTime<Utc>,
) -> Result<Invoice, BillingError> {
    let mut lines = Vec::new();
    for s in services {
        for (case, unit_months) in &sums.by_use_case {
            let price = policy.price(s, case).ok_or_else(|| BillingError::NoPrice {
                policy: policy.id.clone(),
                service: s.to_string(),
                use_case: case.to_string(),
            })?;
            lines.push(Line {
                service: s.to_string(),
                use_case: case.to_string(),
                description: format!("{s}, {case}: {unit_months} unit-months at {price} per unit and year"),
                quantity: *unit_months,
                unit_price: price,
                amount: Cents::clamped(round_div(i128::from(price.0) * i128::from(*unit_months), 12)),
            });
        }
    }
    Ok(invoice(
        policy,
        format!("{agreement}/{}", sums.year),
        agreement,
        debtor,
        year_bounds(sums.year)?,
        lines,
        issued,
    ))
}

/// The catalogue for `year`, monthly pro rata, over a list of devices.
pub fn catalogue_year(
    policy: &BillingPolicy,
    agreement: &str,
    debtor: &str,
    year: i32,
    services: &[&str],
    devices: &[DeviceUse],
    issued: DateTime<Utc>,
) -> Result<Invoice, BillingError> {
    let mut sums = UnitMonths::new(policy, year)?;
    for d in devices {
        if let (Some(f), Some(l)) = (d.first_seen, d.last_seen) {
            sums.add(&d.use_case, d.quantities, f, l);
        }
    }
    catalogue_invoice(policy, agreement, debtor, services, &sums, issued)
}

/// Penalties owed by the operator, capped at the policy's share of the year's amount.
pub fn penalties(
    policy: &BillingPolicy,
    year_amount: Cents,
    non_conformities: u32,
    weeks_of_delay: u32,
) -> Cents {
    let Some(p) = &policy.penalties else {
        return Cents(0);
    };
    let raw = Cents::clamped(
        i128::from(p.per_non_conformity_cents) * i128::from(non_conformities)
            + i128::from(p.per_week_of_delay_cents) * i128::from(weeks_of_delay),
    );
    raw.min(year_amount.percent_bp(p.cap_bp))
}

/// A penalty as a credit line on the year's invoice.
pub fn penalty_line(amount: Cents, non_conformities: u32, weeks_of_delay: u32) -> Line {
    Line {
        service: "penalties".into(),
        use_case: "all".into(),
        description: format!(
            "Pénalités: {non_conformities} non-conformités, {weeks_of_delay} semaines de retard (plafond appliqué)"
        ),
        quantity: 1,
        unit_price: Cents(amount.0.saturating_neg()),
        amount: Cents(amount.0.saturating_neg()),
    }
}

/// A non-member's yearly subscription: a rate per inhabitant, capped.
pub fn subscription(policy: &BillingPolicy, inhabitants: u64) -> Cents {
    match &policy.subscription {
        Some(s) => Cents::clamped(
            (i128::from(s.cents_per_inhabitant) * i128::from(inhabitants)).min(s.cap_cents.into()),
        ),
        None => Cents(0),
    }
}

/// 1 January of `year`, 00:00 UTC: the date objects are counted for the yearly fee.
pub fn first_of_january(year: i32) -> Option<DateTime<Utc>> {
    Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).single()
}
