//! A block of DevAddrs (prefix/length), as the roster assigns them to members.

use entente_model::DevAddr;

/// A contiguous block of DevAddrs owned by this member (prefix/length, as in the roster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevAddrBlock {
    pub prefix: u32,
    pub len: u8,
}

impl DevAddrBlock {
    pub fn contains(&self, a: DevAddr) -> bool {
        self.len == 0 || (a.0 ^ self.prefix) >> (32 - self.len as u32) == 0
    }
    pub fn random(&self) -> DevAddr {
        let host_bits = 32 - self.len as u32;
        let mask = if host_bits == 32 {
            u32::MAX
        } else {
            (1u32 << host_bits) - 1
        };
        DevAddr((self.prefix & !mask) | (fastrand::u32(..) & mask))
    }
}

impl std::str::FromStr for DevAddrBlock {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not PREFIX/LENGTH, e.g. 26011000/20"))?;
        let prefix: DevAddr = p.parse().map_err(|e| format!("{e}"))?;
        let len: u8 = l
            .parse()
            .map_err(|_| format!("prefix length {l:?} is not a number"))?;
        if len > 32 {
            return Err(format!("prefix length {len} is over 32"));
        }
        Ok(DevAddrBlock {
            prefix: prefix.0,
            len,
        })
    }
}
