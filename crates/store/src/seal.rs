//! Sealing at rest: the rows of tables that hold keys ([`crate::Table::SEALED`]: devices'
//! root keys, sessions' keys) are encrypted with AES-256-GCM-SIV under the node's master
//! key before RocksDB sees them, so neither the SST files nor the WAL of a copied data
//! dir hold a key in clear.
//!
//! GCM-SIV rather than GCM: a session row is rewritten on every uplink, so nonces are
//! counted in billions; GCM-SIV stays safe even if one repeats (a repeat would only
//! show that two identical rows are identical). Each sealed value names the master key
//! it was sealed under, so a rotation can re-seal row by row and a node given the wrong
//! key says so instead of reading garbage. The table name and the row key are the
//! associated data: a sealed row moved under another key (another device) fails to open.

use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Format of a sealed value: `[VERSION][key id: 8][nonce: 12][ciphertext][tag: 16]`.
const VERSION: u8 = 1;
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;

/// A node master key: 32 random bytes, never written inside the data dir.
pub struct MasterKey(Zeroizing<[u8; 32]>);

/// Names a master key without revealing it (the first 8 bytes of a SHA-256 of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; ID_LEN]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a master key is 64 hexadecimal digits (32 bytes)")]
    BadKeyText,
    #[error("no randomness from the OS: {0}")]
    NoRandomness(String),
    #[error(
        "sealed under master key {0}, which this node was not given (a data dir copied without its key, or a key rotated away)"
    )]
    UnknownKey(KeyId),
    #[error("not a sealed value (unknown format)")]
    NotSealed,
    #[error("fails authentication: altered, or moved from another row")]
    Forged,
}

impl MasterKey {
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|e| SealError::NoRandomness(e.to_string()))?;
        Ok(Self(bytes))
    }

    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| SealError::BadKeyText)?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    pub fn id(&self) -> KeyId {
        let digest = Sha256::new()
            .chain_update(b"entente master key id")
            .chain_update(self.0.as_ref())
            .finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        KeyId(id)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

/// Seals with the current master key; opens with it or with a retired one (during a
/// rotation, rows sealed under the previous key are still read).
pub struct Sealer {
    current: (KeyId, Aes256GcmSiv),
    retired: Vec<(KeyId, Aes256GcmSiv)>,
    /// Nonces are this process's random prefix and a counter: unique within a run, and
    /// across runs unless two runs draw the same 32-bit prefix.
    nonce_prefix: [u8; 4],
    nonce_counter: AtomicU64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current.0)
            .field(
                "retired",
                &self.retired.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn cipher(key: &MasterKey) -> (KeyId, Aes256GcmSiv) {
    (key.id(), Aes256GcmSiv::new(key.0.as_ref().into()))
}

impl Sealer {
    pub fn new(current: &MasterKey, retired: &[MasterKey]) -> Result<Self, SealError> {
        let mut nonce_prefix = [0u8; 4];
        getrandom::fill(&mut nonce_prefix).map_err(|e| SealError::NoRandomness(e.to_string()))?;
        Ok(Self {
            current: cipher(current),
            retired: retired.iter().map(cipher).collect(),
            nonce_prefix,
            nonce_counter: AtomicU64::new(0),
        })
    }

    /// A sealer under a key drawn now and never written down: for tests and benchmarks
    /// whose data does not outlive the process.
    pub fn ephemeral() -> Result<Self, SealError> {
        Self::new(&MasterKey::generate()?, &[])
    }

    pub fn current_id(&self) -> KeyId {
        self.current.0
    }

    /// Appends the sealed form of `plain`, bound to `table` and `row`, to `out`.
    pub fn seal(&self, table: &str, row: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let n = self.nonce_counter.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let (id, cipher) = &self.current;
        let start = out.len();
        out.push(VERSION);
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let body = start + HEADER_LEN;
        let aad = associated_data(table, row);
        // Encryption of a buffer this size cannot fail (it fails only beyond 2^36 bytes).
        if let Ok(tag) = cipher.encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[body..]) {
            out.extend_from_slice(&tag);
        }
    }

    /// The clear text of a value [`Sealer::seal`] produced for this `table` and `row`.
    pub fn open(&self, table: &str, row: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (id, nonce, body) = parse(sealed)?;
        let cipher = self.cipher_for(id)?;
        let (text, tag) = body.split_at(body.len() - TAG_LEN);
        let mut plain = text.to_vec();
        cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &associated_data(table, row),
                &mut plain,
                tag.into(),
            )
            .map_err(|_| SealError::Forged)?;
        Ok(plain)
    }

    /// Whether `sealed` is under the current key (a rotation skips those rows).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        matches!(parse(sealed), Ok((id, _, _)) if id == self.current.0)
    }

    fn cipher_for(&self, id: KeyId) -> Result<&Aes256GcmSiv, SealError> {
        std::iter::once(&self.current)
            .chain(&self.retired)
            .find(|(k, _)| *k == id)
            .map(|(_, c)| c)
            .ok_or(SealError::UnknownKey(id))
    }
}

fn parse(sealed: &[u8]) -> Result<(KeyId, &[u8], &[u8]), SealError> {
    if sealed.len() < HEADER_LEN + TAG_LEN || sealed.first() != Some(&VERSION) {
        return Err(SealError::NotSealed);
    }
    let (header, body) = sealed.split_at(HEADER_LEN);
    let (id, nonce) = header[1..].split_at(ID_LEN);
    let mut key_id = [0u8; ID_LEN];
    key_id.copy_from_slice(id);
    Ok((KeyId(key_id), nonce, body))
}

fn associated_data(table: &str, row: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(table.len() + 1 + row.len());
    aad.extend_from_slice(table.as_bytes());
    aad.push(0);
    aad.extend_from_slice(row);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_hex(&hex::encode([b; 32])).unwrap()
    }

    #[test]
    fn sealed_rows_open_only_with_their_key_table_and_row() {
        let sealer = Sealer::new(&key(1), &[]).unwrap();
        let mut out = Vec::new();
        sealer.seal("devices", b"row-1", b"secret key material", &mut out);
        assert!(!out.windows(6).any(|w| w == b"secret"), "no clear text");
        assert_eq!(
            sealer.open("devices", b"row-1", &out).unwrap(),
            b"secret key material"
        );
        assert_eq!(sealer.open("devices", b"row-2", &out), Err(SealError::Forged));
        assert_eq!(sealer.open("sessions", b"row-1", &out), Err(SealError::Forged));
        let mut altered = out.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(sealer.open("devices", b"row-1", &altered), Err(SealError::Forged));
        let other = Sealer::new(&key(2), &[]).unwrap();
        assert_eq!(
            other.open("devices", b"row-1", &out),
            Err(SealError::UnknownKey(key(1).id()))
        );
        for short in [
            &[][..],
            &out[..HEADER_LEN + TAG_LEN - 1],
            b"\x02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(sealer.open("devices", b"row-1", short), Err(SealError::NotSealed));
        }
    }

    #[test]
    fn a_retired_key_still_opens_and_nonces_never_repeat_in_a_run() {
        let old = Sealer::new(&key(1), &[]).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        old.seal("t", b"k", b"same", &mut a);
        old.seal("t", b"k", b"same", &mut b);
        assert_ne!(a, b, "two seals of one value differ (fresh nonce)");
        let rotating = Sealer::new(&key(2), &[key(1)]).unwrap();
        assert_eq!(rotating.open("t", b"k", &a).unwrap(), b"same");
        assert!(!rotating.is_current(&a));
        let mut c = Vec::new();
        rotating.seal("t", b"k", b"same", &mut c);
        assert!(rotating.is_current(&c));
    }

    #[test]
    fn key_text_is_checked_and_ids_do_not_show_the_key() {
        assert_eq!(MasterKey::from_hex("00").unwrap_err(), SealError::BadKeyText);
        assert_eq!(
            MasterKey::from_hex(&"zz".repeat(32)).unwrap_err(),
            SealError::BadKeyText
        );
        let k = MasterKey::generate().unwrap();
        assert_eq!(MasterKey::from_hex(&k.to_hex()).unwrap().id(), k.id());
        assert!(!k.to_hex().contains(&k.id().to_string()));
        assert_ne!(MasterKey::generate().unwrap().id(), k.id());
    }
}
