//! Which member a frame belongs to: DevAddr by longest-prefix match over the roster's
//! blocks, JoinEUI by range, and DevEUIs declared under agreements (for joins whose
//! JoinEUI is in no member's range). A member's JoinEUI range decides before any
//! declaration, and a DevEUI inside another member's range cannot be declared: a guest
//! cannot pull another member's joins.
//!
//! Lookup cost depends on the number of distinct prefix lengths (at most 33) and the log
//! of the number of ranges, never on the number of devices or members.

use std::collections::HashMap;

use entente_model::{DevAddr, DevEui, JoinEui, MemberId};

use crate::roster::Member;

#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Prefix lengths present, longest first, each with its masked prefixes.
    by_len: Vec<(u8, HashMap<u32, usize>)>,
    /// Non-overlapping JoinEUI ranges sorted by first.
    join_ranges: Vec<(u64, u64, usize)>,
    dev_euis: HashMap<DevEui, usize>,
    members: Vec<MemberId>,
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl RoutingTable {
    /// Builds the table; overlapping blocks or ranges between members are an error.
    pub fn build(members: &[Member], declared: &[(DevEui, MemberId)]) -> Result<RoutingTable, String> {
        let mut t = RoutingTable::default();
        let mut lens: HashMap<u8, HashMap<u32, usize>> = HashMap::new();
        let mut blocks: Vec<(u32, u8, usize)> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            t.members.push(m.id.clone());
            for b in &m.dev_addr_blocks {
                let p = b.prefix & mask(b.len);
                // Two blocks overlap when one contains the other's prefix.
                for (q, ql, j) in &blocks {
                    let l = b.len.min(*ql);
                    if (p & mask(l)) == (q & mask(l)) {
                        return Err(format!(
                            "DevAddr block {:08x}/{} of {} overlaps {:08x}/{} of {}",
                            p, b.len, m.id, q, ql, members[*j].id
                        ));
                    }
                }
                blocks.push((p, b.len, i));
                lens.entry(b.len).or_default().insert(p, i);
            }
            for r in &m.join_eui_ranges {
                t.join_ranges.push((r.first, r.last, i));
            }
        }
        t.by_len = lens.into_iter().collect();
        t.by_len.sort_by_key(|e| std::cmp::Reverse(e.0));
        t.join_ranges.sort();
        for w in t.join_ranges.windows(2) {
            if w[1].0 <= w[0].1 {
                return Err(format!(
                    "JoinEUI ranges of {} and {} overlap",
                    t.members[w[0].2], t.members[w[1].2]
                ));
            }
        }
        for (eui, m) in declared {
            let Some(i) = t.members.iter().position(|x| x == m) else {
                continue;
            };
            if t.range_of(u64::from_be_bytes(eui.0))
                .is_none_or(|owner| owner == i)
            {
                t.dev_euis.insert(*eui, i);
            }
        }
        Ok(t)
    }

    /// The member whose JoinEUI range holds `x`.
    fn range_of(&self, x: u64) -> Option<usize> {
        let idx = self.join_ranges.partition_point(|r| r.0 <= x);
        let (first, last, i) = *self.join_ranges.get(idx.checked_sub(1)?)?;
        (first <= x && x <= last).then_some(i)
    }

    pub fn dev_addr(&self, a: DevAddr) -> Option<&MemberId> {
        for (len, map) in &self.by_len {
            if let Some(i) = map.get(&(a.0 & mask(*len))) {
                return Some(&self.members[*i]);
            }
        }
        None
    }

    pub fn join(&self, join_eui: JoinEui, dev_eui: DevEui) -> Option<&MemberId> {
        let i = self
            .range_of(u64::from_be_bytes(join_eui.0))
            .or_else(|| self.dev_euis.get(&dev_eui).copied())?;
        self.members.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::{JoinEuiRange, MemberKind};
    use ed25519_dalek::SigningKey;

    fn member(id: &str, blocks: &[&str], ranges: &[&str]) -> Member {
        let k = SigningKey::from_bytes(&[id.len() as u8; 32]).verifying_key();
        Member {
            id: id.parse().unwrap(),
            name: id.into(),
            kind: MemberKind::Commune,
            public_key: k,
            peer_id: crate::roster::peer_id_of(&k).unwrap(),
            addresses: vec![],
            dev_addr_blocks: blocks.iter().map(|b| b.parse().unwrap()).collect(),
            join_eui_ranges: ranges
                .iter()
                .map(|r| r.parse::<JoinEuiRange>().unwrap())
                .collect(),
            roams_on: Default::default(),
        }
    }

    #[test]
    fn longest_prefix_and_ranges() {
        let ms = vec![
            member("tours", &["26000000/8"], &["0000000000000000-00000000000000FF"]),
            member("smo", &["27010000/16"], &["0000000000000100-00000000000001FF"]),
            member("blois", &["27010100/24"], &[]),
        ];
        // 27010000/16 contains 27010100/24: an overlap, refused.
        assert!(RoutingTable::build(&ms, &[]).is_err());
        let ms = vec![
            member("tours", &["26000000/8"], &["0000000000000000-00000000000000FF"]),
            member("smo", &["27010000/16"], &["0000000000000100-00000000000001FF"]),
            member("blois", &["27020100/24"], &[]),
        ];
        let t = RoutingTable::build(&ms, &[(DevEui([9; 8]), "blois".parse().unwrap())]).unwrap();
        assert_eq!(t.dev_addr(DevAddr(0x2612_3456)).unwrap().as_str(), "tours");
        assert_eq!(t.dev_addr(DevAddr(0x2701_ffff)).unwrap().as_str(), "smo");
        assert_eq!(t.dev_addr(DevAddr(0x2702_0142)).unwrap().as_str(), "blois");
        assert!(t.dev_addr(DevAddr(0x2702_0242)).is_none());
        let je = |x: u64| JoinEui(x.to_be_bytes());
        assert_eq!(t.join(je(0x10), DevEui([1; 8])).unwrap().as_str(), "tours");
        assert_eq!(t.join(je(0x1ff), DevEui([1; 8])).unwrap().as_str(), "smo");
        assert!(t.join(je(0x200), DevEui([1; 8])).is_none());
        assert_eq!(t.join(je(0x200), DevEui([9; 8])).unwrap().as_str(), "blois");
        // A declaration cannot take another member's joins: its JoinEUI range decides,
        // and a DevEUI inside another member's range is not routed by declaration.
        assert_eq!(t.join(je(0x10), DevEui([9; 8])).unwrap().as_str(), "tours");
        let inside_tours = DevEui(0x42u64.to_be_bytes());
        let t = RoutingTable::build(&ms, &[(inside_tours, "blois".parse().unwrap())]).unwrap();
        assert!(t.join(je(0x200), inside_tours).is_none());
        let own = DevEui(0x142u64.to_be_bytes());
        let t = RoutingTable::build(&ms, &[(own, "smo".parse().unwrap())]).unwrap();
        assert_eq!(t.join(je(0x200), own).unwrap().as_str(), "smo");
    }
}
