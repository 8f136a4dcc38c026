//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)` on a non-blocking socket, so one
//! system call moves up to a batch of datagrams. Linux only (the node's platform).
//!
//! The kernel structures hold raw pointers into the buffers; they are built on the stack
//! for each call and never outlive it, so the buffers stay plain `Vec`s (and `Send`).

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams moved by one system call at most.
pub const BATCH: usize = 64;

/// Buffers for up to [`BATCH`] received datagrams of at most `slot` bytes each.
pub struct RecvBatch {
    buf: Vec<u8>,
    slot: usize,
    /// Length and sender of each datagram of the last call.
    got: Vec<(usize, SocketAddr)>,
}

impl RecvBatch {
    /// `slot` bytes per datagram; a longer one arrives cut to `slot` bytes (so give one
    /// byte more than the largest accepted, and a datagram of `slot` bytes is oversize).
    pub fn new(slot: usize) -> Self {
        let slot = slot.max(1);
        Self {
            buf: vec![0; slot * BATCH],
            slot,
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Receives the datagrams already waiting, up to [`BATCH`], without blocking.
    /// `Err(WouldBlock)` when there are none.
    pub fn recv(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        self.got.clear();
        let n = recv_into(fd.as_raw_fd(), &mut self.buf, self.slot, &mut self.got)?;
        Ok(n)
    }

    pub fn len(&self) -> usize {
        self.got.len()
    }

    pub fn is_empty(&self) -> bool {
        self.got.is_empty()
    }

    /// The `i`-th datagram of the last call and its sender.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let (len, from) = *self.got.get(i)?;
        let start = i.checked_mul(self.slot)?;
        let bytes = self.buf.get(start..start.checked_add(len.min(self.slot))?)?;
        Some((bytes, from))
    }
}

fn recv_into(
    fd: RawFd,
    buf: &mut [u8],
    slot: usize,
    got: &mut Vec<(usize, SocketAddr)>,
) -> io::Result<usize> {
    let count = (buf.len() / slot).min(BATCH);
    // SAFETY: all-zero is a valid value for these plain C structures.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iov: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    for (i, chunk) in buf.chunks_exact_mut(slot).take(count).enumerate() {
        let (Some(v), Some(h), Some(name)) = (iov.get_mut(i), hdrs.get_mut(i), names.get_mut(i)) else {
            break;
        };
        v.iov_base = chunk.as_mut_ptr().cast();
        v.iov_len = chunk.len();
        h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers point at live, distinct buffers of the stated
    // sizes and at their own address storage; the kernel writes within those bounds.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (h, name) in hdrs.iter().zip(names.iter()).take(n) {
        let from =
            sockaddr_to_std(name, h.msg_hdr.msg_namelen).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        got.push((h.msg_len as usize, from));
    }
    Ok(n)
}

fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

pub(crate) fn std_to_sockaddr(a: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let s = unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let s = unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_flowinfo = v6.flowinfo();
            s.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            s.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Sends up to [`BATCH`] datagrams with one call, without blocking; each goes to its own
/// address, or to the connected peer when `None`. Returns how many the kernel took (the
/// first ones); `Err(WouldBlock)` when it took none.
pub fn send_batch(fd: &impl AsRawFd, msgs: &[(&[u8], Option<SocketAddr>)]) -> io::Result<usize> {
    let count = msgs.len().min(BATCH);
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value for these plain C structures.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iov: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    for (i, (bytes, to)) in msgs.iter().take(count).enumerate() {
        let (Some(v), Some(h), Some(name)) = (iov.get_mut(i), hdrs.get_mut(i), names.get_mut(i)) else {
            break;
        };
        v.iov_base = bytes.as_ptr() as *mut libc::c_void;
        v.iov_len = bytes.len();
        if let Some(to) = to {
            h.msg_hdr.msg_namelen = std_to_sockaddr(to, name);
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        }
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `count` headers point at live buffers and addresses.
    unsafe { send_headers(fd.as_raw_fd(), hdrs.get_mut(..count).unwrap_or_default()) }
}

/// One `sendmmsg(2)` of `hdrs`, without blocking: how many the kernel took (the first
/// ones), `Err(WouldBlock)` when it took none.
///
/// # Safety
/// Every header must point at buffers, addresses and control messages that stay alive
/// through the call; the kernel only reads them (and writes `msg_len`).
pub(crate) unsafe fn send_headers(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the caller's promise, for `hdrs.len()` headers.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_one_call_each() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1 + i as usize]).collect();
        let refs: Vec<(&[u8], Option<SocketAddr>)> = msgs.iter().map(|m| (m.as_slice(), Some(to))).collect();
        assert_eq!(send_batch(&tx, &refs).unwrap(), 10);
        // An oversize datagram arrives cut to the slot.
        tx.send_to(&[7; 100], to).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut b = RecvBatch::new(8);
        let mut seen = Vec::new();
        while seen.len() < 11 {
            match b.recv(&rx) {
                Ok(_) => {
                    for i in 0..b.len() {
                        let (bytes, from) = b.get(i).unwrap();
                        assert_eq!(from, tx.local_addr().unwrap());
                        seen.push(bytes.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        for (i, m) in seen.iter().take(10).enumerate() {
            assert_eq!(m.len(), (1 + i).min(8));
        }
        assert_eq!(seen[10], vec![7; 8]);
        assert!(b.get(99).is_none());
        // Nothing left: would block.
        assert_eq!(b.recv(&rx).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
