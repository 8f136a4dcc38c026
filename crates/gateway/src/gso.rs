//! Segmented UDP sends (UDP GSO, `UDP_SEGMENT`, Linux 4.18 and later): datagrams of one
//! size to one address go down the IP stack once as a run the kernel cuts into separate
//! datagrams, instead of once each. The gateway server's acknowledgements are all four
//! bytes, so the acks of a receive batch to one gateway travel as one run. Where the
//! kernel refuses, the caller sends them one by one instead (`mmsg::send_batch`).

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use crate::mmsg::{BATCH, send_headers, std_to_sockaddr};

/// Datagrams per run at most (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
pub const MAX_SEGMENTS: usize = 64;

/// Datagrams of `segment` bytes each (the last may be shorter), back to back, for `to`.
#[derive(Debug, Clone)]
pub struct Run {
    pub to: SocketAddr,
    pub segment: usize,
    pub bytes: Vec<u8>,
}

impl Run {
    pub fn datagrams(&self) -> usize {
        self.bytes.len().div_ceil(self.segment.max(1))
    }
}

/// Room for one control message carrying a `u16`, aligned as a `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 32]);

/// Sends up to [`BATCH`] runs with one call, without blocking. Returns how many runs the
/// kernel took (the first ones); `Err(WouldBlock)` when it took none. A run of one
/// datagram is sent as a plain datagram.
pub fn send_runs(fd: &impl AsRawFd, runs: &[Run]) -> io::Result<usize> {
    let count = runs.len().min(BATCH);
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value for these plain C structures.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iov: [libc::iovec; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut controls = [Control([0; 32]); BATCH];
    for (i, run) in runs.iter().take(count).enumerate() {
        let (Some(v), Some(h), Some(name), Some(c)) = (
            iov.get_mut(i),
            hdrs.get_mut(i),
            names.get_mut(i),
            controls.get_mut(i),
        ) else {
            break;
        };
        v.iov_base = run.bytes.as_ptr() as *mut libc::c_void;
        v.iov_len = run.bytes.len();
        h.msg_hdr.msg_namelen = std_to_sockaddr(&run.to, name);
        h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
        if run.datagrams() > 1 {
            let segment = u16::try_from(run.segment).map_err(|_| io::ErrorKind::InvalidInput)?;
            set_segment(&mut h.msg_hdr, c, segment);
        }
    }
    // SAFETY: the first `count` headers point at live buffers, addresses and control
    // messages.
    unsafe { send_headers(fd.as_raw_fd(), hdrs.get_mut(..count).unwrap_or_default()) }
}

/// Attaches a `UDP_SEGMENT` control message to `hdr`, stored in `c`.
fn set_segment(hdr: &mut libc::msghdr, c: &mut Control, segment: u16) {
    // SAFETY: `c` is aligned for a cmsghdr and larger than CMSG_SPACE(2) (24 bytes on
    // 64-bit Linux); CMSG_FIRSTHDR then points into it, and the data fits after it.
    unsafe {
        let space = libc::CMSG_SPACE(size_of::<u16>() as libc::c_uint) as usize;
        hdr.msg_control = c.0.as_mut_ptr().cast();
        hdr.msg_controllen = space.min(c.0.len());
        let cm = libc::CMSG_FIRSTHDR(hdr);
        if cm.is_null() {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            return;
        }
        (*cm).cmsg_level = libc::SOL_UDP;
        (*cm).cmsg_type = libc::UDP_SEGMENT;
        (*cm).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as libc::c_uint) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast::<u16>(), segment);
    }
}

/// Whether an error from [`send_runs`] means this kernel or route cannot segment.
pub fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmsg::RecvBatch;

    #[test]
    fn a_run_arrives_as_separate_datagrams_in_order() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let run = Run {
            to,
            segment: 4,
            bytes: (0..10u8).flat_map(|i| [2, i, 0, 1]).collect(),
        };
        let single = Run {
            to,
            segment: 4,
            bytes: vec![2, 99, 0, 4],
        };
        match send_runs(&tx, &[run, single]) {
            Ok(n) => assert_eq!(n, 2),
            Err(e) if unsupported(&e) => return, // an old kernel: the caller falls back
            Err(e) => panic!("{e}"),
        }
        rx.set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut b = RecvBatch::new(16);
        let mut seen = Vec::new();
        while seen.len() < 11 {
            match b.recv(&rx) {
                Ok(_) => (0..b.len()).for_each(|i| seen.push(b.get(i).unwrap().0.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        let want: Vec<Vec<u8>> = (0..10u8)
            .map(|i| vec![2, i, 0, 1])
            .chain([vec![2, 99, 0, 4]])
            .collect();
        assert_eq!(seen, want);
    }
}
