//! The federation's roster: who is a member, with which key, addresses and DevAddr blocks,
//! and who signed this version.
//!
//! File layout: the roster body (TOML), then signature blocks. What is signed is the exact
//! bytes of the body (everything before the first `[[signature]]` line) behind a domain
//! prefix, so a signature never depends on how a parser re-serialises the document.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use entente_frame::DevAddrBlock;
use entente_model::{JoinEui, MemberId};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

pub const DOMAIN: &[u8] = b"entente/roster/v1\n";
const SIGNATURE_MARK: &str = "[[signature]]";

#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("{0}: cannot read: {1}")]
    Read(String, std::io::Error),
    #[error("roster: {0}")]
    Parse(String),
    #[error("roster: member {member}: {reason}")]
    Member { member: String, reason: String },
    #[error("roster: signature of {member}: {reason}")]
    Signature { member: String, reason: String },
    #[error(
        "roster version {version} is not valid: {have} of {members} members signed, {need} needed ({rule})"
    )]
    NotEnoughSignatures {
        version: u64,
        have: usize,
        need: usize,
        members: usize,
        rule: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    Syndicate,
    Metropole,
    Commune,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// More than half of the members of this version.
    Majority,
    /// Every member.
    All,
}

/// An inclusive JoinEUI range, written `FIRST-LAST` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinEuiRange {
    pub first: u64,
    pub last: u64,
}

impl std::str::FromStr for JoinEuiRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not FIRST-LAST"))?;
        let a: JoinEui = a.trim().parse().map_err(|e| format!("{e}"))?;
        let b: JoinEui = b.trim().parse().map_err(|e| format!("{e}"))?;
        let (first, last) = (u64::from_be_bytes(a.0), u64::from_be_bytes(b.0));
        if first > last {
            return Err(format!("{s:?}: first is after last"));
        }
        Ok(JoinEuiRange { first, last })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    pub id: MemberId,
    pub name: String,
    pub kind: MemberKind,
    /// The node's ed25519 public key, hex; its libp2p peer id derives from it.
    pub public_key: String,
    /// Multiaddresses where the node listens, e.g. `/ip4/192.0.2.1/tcp/4001`.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub dev_addr_blocks: Vec<String>,
    #[serde(default)]
    pub join_eui_ranges: Vec<String>,
    /// Members whose networks this member's devices may roam on (until agreements decide).
    #[serde(default)]
    pub roams_on: Vec<MemberId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterBody {
    pub federation: String,
    pub version: u64,
    pub rule: Rule,
    #[serde(rename = "member", default)]
    pub members: Vec<MemberEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    pub member: MemberId,
    pub signature: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureBlock {
    #[serde(rename = "signature", default)]
    signatures: Vec<SignatureEntry>,
}

/// A member as the node uses it, keys and blocks parsed.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: MemberId,
    pub name: String,
    pub kind: MemberKind,
    pub public_key: VerifyingKey,
    pub peer_id: PeerId,
    pub addresses: Vec<multiaddr::Multiaddr>,
    pub dev_addr_blocks: Vec<DevAddrBlock>,
    pub join_eui_ranges: Vec<JoinEuiRange>,
    pub roams_on: BTreeSet<MemberId>,
}

/// A parsed roster file: the body's exact bytes, the body, its signatures.
#[derive(Debug, Clone)]
pub struct Roster {
    pub body_text: String,
    pub body: RosterBody,
    pub members: Vec<Member>,
    pub signatures: Vec<SignatureEntry>,
}

pub fn peer_id_of(key: &VerifyingKey) -> Result<PeerId, String> {
    let pk =
        libp2p_identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).map_err(|e| e.to_string())?;
    Ok(libp2p_identity::PublicKey::from(pk).to_peer_id())
}

fn signed_bytes(body: &str) -> Vec<u8> {
    let mut v = DOMAIN.to_vec();
    v.extend_from_slice(body.as_bytes());
    v
}

impl Roster {
    pub fn load(path: &Path) -> Result<Roster, RosterError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| RosterError::Read(path.display().to_string(), e))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Roster, RosterError> {
        let split = text
            .match_indices(SIGNATURE_MARK)
            .find(|(i, _)| *i == 0 || text.as_bytes()[i - 1] == b'\n')
            .map_or(text.len(), |(i, _)| i);
        let (body_text, sig_text) = text.split_at(split);
        let body: RosterBody = toml::from_str(body_text).map_err(|e| RosterError::Parse(e.to_string()))?;
        let sigs: SignatureBlock = toml::from_str(sig_text).map_err(|e| RosterError::Parse(e.to_string()))?;
        let mut members = Vec::new();
        let mut seen = HashMap::new();
        for m in &body.members {
            let err = |reason: String| RosterError::Member {
                member: m.id.to_string(),
                reason,
            };
            if seen.insert(m.id.clone(), ()).is_some() {
                return Err(err("listed twice".into()));
            }
            let raw = hex::decode(m.public_key.trim()).map_err(|e| err(format!("public_key: {e}")))?;
            let arr: [u8; 32] = raw
                .try_into()
                .map_err(|_| err("public_key must be 32 bytes of hex".into()))?;
            let public_key = VerifyingKey::from_bytes(&arr).map_err(|e| err(format!("public_key: {e}")))?;
            let peer_id = peer_id_of(&public_key).map_err(err)?;
            let addresses = m
                .addresses
                .iter()
                .map(|a| a.parse().map_err(|e| err(format!("address {a:?}: {e}"))))
                .collect::<Result<_, _>>()?;
            let dev_addr_blocks = m
                .dev_addr_blocks
                .iter()
                .map(|b| b.parse().map_err(|e| err(format!("dev_addr_block {b:?}: {e}"))))
                .collect::<Result<_, _>>()?;
            let join_eui_ranges = m
                .join_eui_ranges
                .iter()
                .map(|r| r.parse().map_err(|e| err(format!("join_eui_range: {e}"))))
                .collect::<Result<_, _>>()?;
            members.push(Member {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind,
                public_key,
                peer_id,
                addresses,
                dev_addr_blocks,
                join_eui_ranges,
                roams_on: m.roams_on.iter().cloned().collect(),
            });
        }
        for m in &body.members {
            for r in &m.roams_on {
                if !seen.contains_key(r) {
                    return Err(RosterError::Member {
                        member: m.id.to_string(),
                        reason: format!("roams_on names {r}, who is not a member"),
                    });
                }
            }
        }
        let roster = Roster {
            body_text: body_text.to_string(),
            body,
            members,
            signatures: sigs.signatures,
        };
        crate::routing::RoutingTable::build(&roster.members, &[]).map_err(RosterError::Parse)?;
        Ok(roster)
    }

    pub fn member(&self, id: &MemberId) -> Option<&Member> {
        self.members.iter().find(|m| &m.id == id)
    }

    pub fn by_peer(&self, peer: &PeerId) -> Option<&Member> {
        self.members.iter().find(|m| &m.peer_id == peer)
    }

    /// Checks every signature and the roster's rule. Returns the members who signed.
    pub fn verify(&self) -> Result<Vec<MemberId>, RosterError> {
        let msg = signed_bytes(&self.body_text);
        let mut signers = BTreeSet::new();
        for s in &self.signatures {
            let err = |reason: &str| RosterError::Signature {
                member: s.member.to_string(),
                reason: reason.into(),
            };
            let m = self
                .member(&s.member)
                .ok_or_else(|| err("not a member of this version"))?;
            let raw = hex::decode(s.signature.trim()).map_err(|_| err("not hex"))?;
            let sig = Signature::from_slice(&raw).map_err(|_| err("not 64 bytes"))?;
            m.public_key
                .verify(&msg, &sig)
                .map_err(|_| err("does not verify over this roster's bytes"))?;
            if !signers.insert(s.member.clone()) {
                return Err(err("signed twice"));
            }
        }
        let n = self.members.len();
        let need = match self.body.rule {
            Rule::Majority => n / 2 + 1,
            Rule::All => n,
        };
        if signers.len() < need {
            return Err(RosterError::NotEnoughSignatures {
                version: self.body.version,
                have: signers.len(),
                need,
                members: n,
                rule: format!("{:?}", self.body.rule).to_lowercase(),
            });
        }
        Ok(signers.into_iter().collect())
    }

    /// Signs the body as `member` with `key`; the file text with the signature appended.
    pub fn sign(text: &str, member: &MemberId, key: &SigningKey) -> Result<String, RosterError> {
        let roster = Self::parse(text)?;
        let m = roster.member(member).ok_or_else(|| RosterError::Signature {
            member: member.to_string(),
            reason: "not a member of this roster".into(),
        })?;
        if m.public_key != key.verifying_key() {
            return Err(RosterError::Signature {
                member: member.to_string(),
                reason: "this key is not the member's public key in the roster".into(),
            });
        }
        if roster.signatures.iter().any(|s| &s.member == member) {
            return Err(RosterError::Signature {
                member: member.to_string(),
                reason: "already signed".into(),
            });
        }
        let sig = key.sign(&signed_bytes(&roster.body_text));
        let mut out = text.to_string();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "{SIGNATURE_MARK}\nmember = \"{member}\"\nsignature = \"{}\"\n",
            hex::encode(sig.to_bytes())
        ));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    pub fn text(keys: &[SigningKey]) -> String {
        let mut t = "federation = \"val-de-loire\"\nversion = 1\nrule = \"majority\"\n".to_string();
        let ids = ["tours-metropole", "smo-vdln", "agglopolys"];
        for (i, k) in keys.iter().enumerate() {
            t.push_str(&format!(
                "\n[[member]]\nid = \"{}\"\nname = \"M{i}\"\nkind = \"syndicate\"\npublic_key = \"{}\"\naddresses = [\"/ip4/127.0.0.1/tcp/{}\"]\ndev_addr_blocks = [\"2601{i}000/20\"]\njoin_eui_ranges = [\"70B3D5E75E00{i}000-70B3D5E75E00{i}FFF\"]\n",
                ids[i],
                hex::encode(k.verifying_key().as_bytes()),
                4001 + i
            ));
        }
        t
    }

    #[test]
    fn majority_rule_and_tampering() {
        let keys = [key(1), key(2), key(3)];
        let t = text(&keys);
        let r = Roster::parse(&t).unwrap();
        assert!(matches!(
            r.verify(),
            Err(RosterError::NotEnoughSignatures { need: 2, .. })
        ));
        let t1 = Roster::sign(&t, &"tours-metropole".parse().unwrap(), &keys[0]).unwrap();
        assert!(
            Roster::parse(&t1).unwrap().verify().is_err(),
            "1 of 3 is not a majority"
        );
        let t2 = Roster::sign(&t1, &"smo-vdln".parse().unwrap(), &keys[1]).unwrap();
        let signers = Roster::parse(&t2).unwrap().verify().unwrap();
        assert_eq!(signers.len(), 2);

        // A changed byte of the body breaks every signature.
        let forged = t2.replacen("M1", "MX", 1);
        let e = Roster::parse(&forged).unwrap().verify().unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");
        // Signing with someone else's key is refused.
        let e = Roster::sign(&t, &"smo-vdln".parse().unwrap(), &keys[0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the member's public key"), "{e}");
        // Garbage is an error, not a panic.
        for g in ["", "[[signature]]\nmember=1", "federation = 3", "\u{0}\u{1}"] {
            let _ = Roster::parse(g).map(|r| r.verify());
        }
    }

    #[test]
    fn the_shipped_val_de_loire_roster_is_valid() {
        let r = Roster::parse(include_str!("../../../federation/val-de-loire/roster.toml")).unwrap();
        assert_eq!(r.verify().unwrap().len(), 3);
        let smo = r.member(&"smo-vdln".parse().unwrap()).unwrap();
        assert!(smo.roams_on.contains(&"tours-metropole".parse().unwrap()));
    }

    #[test]
    fn overlapping_blocks_are_refused() {
        let keys = [key(1), key(2)];
        let t = text(&keys).replace("26011000/20", "26010000/20");
        let e = Roster::parse(&t).unwrap_err().to_string();
        assert!(e.contains("26010000/20"), "{e}");
    }
}
