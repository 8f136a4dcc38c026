//! `entente bench routing`: the cost of one routing lookup (DevAddr longest prefix,
//! JoinEUI range, declared DevEUI) as members and declared devices grow.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use ed25519_dalek::SigningKey;
use entente_model::{DevAddr, DevEui, JoinEui, MemberId};
use entente_peering::roster::{JoinEuiRange, MemberKind, peer_id_of};
use entente_peering::{Member, RoutingTable};
use serde_json::{Value, json};

fn members(n: usize) -> Result<Vec<Member>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let k = SigningKey::from_bytes(&seed).verifying_key();
        // Blocks of three prefix lengths, so longest-prefix match has work to do.
        let len = [16u8, 20, 24][i % 3];
        let prefix = (i as u32) << 20; // each member its own /12 region
        v.push(Member {
            id: format!("member-{i}").parse()?,
            name: format!("Member {i}"),
            kind: MemberKind::Commune,
            public_key: k,
            peer_id: peer_id_of(&k).map_err(anyhow::Error::msg)?,
            addresses: vec![],
            dev_addr_blocks: vec![
                format!("{prefix:08x}/{len}")
                    .parse()
                    .map_err(anyhow::Error::msg)?,
            ],
            join_eui_ranges: vec![JoinEuiRange {
                first: (i as u64) << 16,
                last: ((i as u64) << 16) | 0xffff,
            }],
            roams_on: Default::default(),
        });
    }
    Ok(v)
}

fn measure(n_members: usize, n_declared: usize) -> Result<Value> {
    let ms = members(n_members)?;
    let declared: Vec<(DevEui, MemberId)> = (0..n_declared)
        .map(|i| {
            (
                DevEui((i as u64 | 1 << 63).to_be_bytes()),
                ms[i % ms.len()].id.clone(),
            )
        })
        .collect();
    let t = RoutingTable::build(&ms, &declared).map_err(anyhow::Error::msg)?;
    let lookups = 1_000_000u64;
    let start = Instant::now();
    let mut hits = 0u64;
    for i in 0..lookups {
        let a = DevAddr((i as u32).wrapping_mul(2_654_435_761));
        hits += u64::from(black_box(t.dev_addr(black_box(a))).is_some());
    }
    let dev_addr_ns = start.elapsed().as_nanos() as f64 / lookups as f64;
    let start = Instant::now();
    for i in 0..lookups {
        let j = JoinEui((i.wrapping_mul(40_503) % ((n_members as u64) << 16)).to_be_bytes());
        let d = DevEui(((i % (n_declared as u64 + 1)) | (1 << 63)).to_be_bytes());
        hits += u64::from(black_box(t.join(black_box(j), black_box(d))).is_some());
    }
    let join_ns = start.elapsed().as_nanos() as f64 / lookups as f64;
    Ok(json!({
        "members": n_members,
        "declared_dev_euis": n_declared,
        "dev_addr_lookup_ns": (dev_addr_ns * 10.0).round() / 10.0,
        "join_lookup_ns": (join_ns * 10.0).round() / 10.0,
        "hits": hits,
    }))
}

pub fn routing() -> Result<Value> {
    let mut rows = Vec::new();
    for (m, d) in [(3, 100), (100, 10_000), (1_000, 1_000_000)] {
        rows.push(measure(m, d)?);
    }
    Ok(json!({ "bench": "routing", "lookups_per_case": 1_000_000, "cases": rows }))
}
