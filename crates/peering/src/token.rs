//! Uplink tokens: the visited node's proof, given to one home peer, that a gateway of its
//! heard a frame at a given concentrator time. The home node can only ask for a downlink
//! through a gateway and timing it was told about, for the device that sent the frame; it
//! cannot forge or transfer a token.

use aes::Aes128;
use cmac::{Cmac, Mac, digest::KeyInit};
use entente_model::{DevAddr, GatewayEui};
use libp2p::PeerId;

/// Gateway (8) + tmst (4) + issued at, ms since the epoch (8) + DevAddr present (1) and
/// DevAddr (4) + CMAC (16).
pub const TOKEN_LEN: usize = 41;
const BODY_LEN: usize = TOKEN_LEN - 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub gateway: GatewayEui,
    pub tmst: u32,
    pub issued_ms: i64,
    /// The data frame's DevAddr; none for a join request (its DevAddr is the home's).
    pub dev_addr: Option<DevAddr>,
}

pub struct TokenKey([u8; 16]);

impl TokenKey {
    /// A fresh random key: tokens do not outlive the process that issued them.
    pub fn random() -> Result<TokenKey, getrandom::Error> {
        let mut k = [0u8; 16];
        getrandom::fill(&mut k)?;
        Ok(TokenKey(k))
    }

    fn mac(&self, peer: &PeerId, body: &[u8]) -> [u8; 16] {
        let mut m = <Cmac<Aes128> as KeyInit>::new(&self.0.into());
        m.update(&peer.to_bytes());
        m.update(body);
        m.finalize().into_bytes().into()
    }

    pub fn issue(&self, peer: &PeerId, t: Token) -> Vec<u8> {
        let mut v = Vec::with_capacity(TOKEN_LEN);
        v.extend_from_slice(&t.gateway.0);
        v.extend_from_slice(&t.tmst.to_be_bytes());
        v.extend_from_slice(&t.issued_ms.to_be_bytes());
        v.push(u8::from(t.dev_addr.is_some()));
        v.extend_from_slice(&t.dev_addr.map_or(0, |a| a.0).to_be_bytes());
        let mac = self.mac(peer, &v);
        v.extend_from_slice(&mac);
        v
    }

    /// The token's content when `peer` was given it by this key; None otherwise.
    pub fn check(&self, peer: &PeerId, raw: &[u8]) -> Option<Token> {
        if raw.len() != TOKEN_LEN {
            return None;
        }
        let (body, mac) = raw.split_at(BODY_LEN);
        let want = self.mac(peer, body);
        // Constant time: a peer probing for valid tokens learns nothing from timing.
        if want.iter().zip(mac).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let gateway = GatewayEui(body[0..8].try_into().ok()?);
        let tmst = u32::from_be_bytes(body[8..12].try_into().ok()?);
        let issued_ms = i64::from_be_bytes(body[12..20].try_into().ok()?);
        let addr = DevAddr(u32::from_be_bytes(body[21..25].try_into().ok()?));
        let dev_addr = (body[20] == 1).then_some(addr);
        Some(Token {
            gateway,
            tmst,
            issued_ms,
            dev_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_peer_gateway_and_timing() {
        let k = TokenKey::random().unwrap();
        let home = PeerId::random();
        let other = PeerId::random();
        let t = Token {
            gateway: GatewayEui([1; 8]),
            tmst: 42,
            issued_ms: 1_700_000_000_000,
            dev_addr: Some(DevAddr(0x2602_0001)),
        };
        let raw = k.issue(&home, t);
        assert_eq!(k.check(&home, &raw), Some(t));
        assert_eq!(k.check(&other, &raw), None, "another peer cannot use it");
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert_eq!(k.check(&home, &bad), None, "byte {i} changed");
        }
        assert_eq!(k.check(&home, &raw[..10]), None);
        assert_eq!(
            TokenKey::random().unwrap().check(&home, &raw),
            None,
            "another node's key"
        );
    }
}
