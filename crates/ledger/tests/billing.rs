//! The conventions' billing rules against hand-computed figures, to the cent.

use chrono::{DateTime, TimeZone, Utc};
use entente_ledger::billing::*;
use entente_ledger::money::{Cents, split};
use entente_ledger::policy::BillingPolicy;
use entente_ledger::sharing;
use entente_model::DevEui;
use proptest::prelude::*;

fn policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

fn device(i: u8, case: &str, q: u32, first: DateTime<Utc>, last: DateTime<Utc>) -> DeviceUse {
    DeviceUse {
        dev_eui: DevEui([0x70, 0xb3, 0xd5, 0xe7, 0, 0, 0, i]),
        use_case: case.into(),
        quantities: q,
        first_seen: Some(first),
        last_seen: Some(last),
    }
}

#[test]
fn the_tours_yearly_fee_is_nbo_times_tao_plus_vat() {
    let p = BillingPolicy::load(&policies(), "tours-metropole/annual-declared").unwrap();
    // 137 objects declared on 1 January 2027, taO = 4.80 EUR.
    let inv = annual_declared(
        &p,
        "tours-smo-2026",
        "SMO Val de Loire Numérique",
        2027,
        137,
        at(2027, 1, 5),
    )
    .unwrap();
    assert_eq!(inv.amount_excl_vat, Cents(65_760), "137 x 4.80 = 657.60 EUR");
    assert_eq!(inv.vat, Cents(13_152));
    assert_eq!(inv.amount_incl_vat, Cents(78_912));
    assert_eq!(inv.due_date.to_string(), "2027-02-04", "30 days");
    assert_eq!(inv.period_start.to_string(), "2027-01-01");
    assert_eq!(inv.creditor, "Tours Métropole Val de Loire");
}

#[test]
fn pro_rata_from_the_first_full_month_and_every_started_month() {
    // First frame 15 March: billed from April. Silent from 10 June: June still due.
    assert_eq!(
        billable_months(at(2026, 3, 15), at(2026, 12, 31), 2026),
        9,
        "April..December"
    );
    assert_eq!(
        billable_months(at(2026, 3, 15), at(2026, 6, 10), 2026),
        3,
        "April, May, June"
    );
    assert_eq!(
        billable_months(at(2026, 3, 1), at(2026, 3, 31), 2026),
        0,
        "never a full month"
    );
    assert_eq!(
        billable_months(at(2025, 11, 20), at(2027, 2, 1), 2026),
        12,
        "all of 2026"
    );
    assert_eq!(
        billable_months(at(2025, 12, 20), at(2026, 1, 2), 2026),
        1,
        "January started"
    );
    assert_eq!(billable_months(at(2026, 12, 2), at(2026, 12, 30), 2026), 0);

    let p = BillingPolicy::load(&policies(), "smo-vdln/catalogue-2025-09").unwrap();
    let devices = [
        device(1, "water_metering", 1, at(2026, 3, 15), at(2026, 12, 31)), // 9 months
        device(2, "water_metering", 1, at(2026, 3, 15), at(2026, 6, 10)),  // 3 months
        device(3, "other", 7, at(2025, 6, 1), at(2026, 12, 31)),           // 2 units x 12
    ];
    let inv = catalogue_year(
        &p,
        "smo-agglopolys",
        "Agglopolys",
        2026,
        &["network_access", "platform_transmission"],
        &devices,
        at(2027, 1, 10),
    )
    .unwrap();
    let amount = |s: &str, c: &str| {
        inv.lines
            .iter()
            .find(|l| l.service == s && l.use_case == c)
            .unwrap()
            .amount
    };
    // 12 unit-months x 4.20 / 12 = 4.20; 24 x 4.80 / 12 = 9.60; 12 x 2.30 / 12 = 2.30; 24 x 9.60 / 12 = 19.20
    assert_eq!(amount("network_access", "water_metering"), Cents(420));
    assert_eq!(amount("network_access", "other"), Cents(960));
    assert_eq!(amount("platform_transmission", "water_metering"), Cents(230));
    assert_eq!(amount("platform_transmission", "other"), Cents(1920));
    assert_eq!(inv.amount_excl_vat, Cents(3530));
    assert_eq!(inv.vat, Cents(706));
    assert_eq!(inv.amount_incl_vat, Cents(4236));
}

#[test]
fn counting_units_penalties_and_subscription() {
    assert_eq!(units(7, 5), 2, "7 quantities = 2 units");
    assert_eq!(
        (units(0, 5), units(1, 5), units(5, 5), units(6, 5), units(11, 5)),
        (1, 1, 1, 2, 3)
    );
    let p = BillingPolicy::load(&policies(), "smo-vdln/catalogue-2025-09").unwrap();
    // 2 non-conformities and 1 week late on a 10 000 EUR year: 250 EUR, under the cap.
    assert_eq!(penalties(&p, Cents::euros(10_000), 2, 1), Cents::euros(250));
    // 40 non-conformities and 8 weeks on a 1 000 EUR year: 3 800 EUR, capped at 200 EUR.
    assert_eq!(penalties(&p, Cents::euros(1_000), 40, 8), Cents::euros(200));
    assert_eq!(penalty_line(Cents::euros(200), 40, 8).amount, Cents(-20_000));
    assert_eq!(subscription(&p, 734), Cents::euros(734));
    assert_eq!(subscription(&p, 48_000), Cents::euros(1_000), "capped");
}

#[test]
fn cost_sharing_keys() {
    // 40 / 40 / 20 of 65 307.59 EUR: the parts sum to the total exactly.
    let parts = sharing::fixed_keys(Cents(6_530_759), &[4000, 4000, 2000]).unwrap();
    assert_eq!(parts, vec![Cents(2_612_304), Cents(2_612_303), Cents(1_306_152)]);
    assert_eq!(parts.iter().copied().sum::<Cents>(), Cents(6_530_759));
    assert!(sharing::fixed_keys(Cents(100), &[5000, 4000]).is_err());
    // 0.033 EUR per inhabitant, at least 62 EUR, at most 1 191 EUR (SIPPEREC 2022).
    let c = |n| sharing::clamped(33_000, n, Cents::euros(62), Cents::euros(1_191)).unwrap();
    assert_eq!(c(1_000), Cents::euros(62), "33 EUR raised to the floor");
    assert_eq!(c(10_000), Cents::euros(330));
    assert_eq!(c(100_000), Cents::euros(1_191), "3 300 EUR cut to the ceiling");
    assert_eq!(c(12_345), Cents(40_739), "407.385 rounds half up");
    // Running costs pro rata of gateways deployed: 44, 26, 7.
    let parts = sharing::pro_rata(Cents::euros(10_000), &[44, 26, 7]);
    assert_eq!(parts.iter().copied().sum::<Cents>(), Cents::euros(10_000));
    assert_eq!(parts[0], Cents(571_429));
}

#[test]
fn a_bad_policy_file_is_a_clear_error() {
    let e = BillingPolicy::parse("id = 3", "x.toml").unwrap_err().to_string();
    assert!(e.starts_with("x.toml:"), "{e}");
    assert!(BillingPolicy::load(&policies(), "../../etc/passwd").is_err());
    assert!(BillingPolicy::load(&policies(), "tours-metropole/none").is_err());
}

proptest! {
    #[test]
    fn split_always_sums_to_the_total(total in -10_000_000i64..10_000_000, w in proptest::collection::vec(0u64..1000, 1..20)) {
        let parts = split(Cents(total), &w);
        if w.iter().sum::<u64>() > 0 {
            prop_assert_eq!(parts.iter().copied().sum::<Cents>(), Cents(total));
        }
    }
}
