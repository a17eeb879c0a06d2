//! ICMP echo to ha.cf's ping nodes (`ping`, `ping6`, `ping_group`): a pseudo-member is
//! alive while it answers. Heartbeat's ping plugin sent one echo per keepalive; so does this,
//! from a thread of its own (never the heartbeat thread), over raw ICMP sockets.
//!
//! Only echo replies carrying our identifier and a payload we sent are counted; anything
//! else arriving on the raw socket (other processes' pings, errors, forged replies) is
//! ignored.
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A ping node and the addresses that stand for it (one for `ping`, several for
/// `ping_group`: the group is alive while any of them answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingTarget {
    pub node: String,
    pub addrs: Vec<IpAddr>,
}

const MAGIC: &[u8; 8] = b"halo-png";

/// Handle of the pinger thread; dropping it stops the thread.
pub struct Pinger {
    stop: Arc<AtomicBool>,
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts pinging every target each `interval`; `on_reply(node)` is called (on the pinger
/// thread) for every valid echo reply. Fails if no raw ICMP socket can be opened for the
/// address families the targets need.
pub fn start(
    targets: Vec<PingTarget>,
    interval: Duration,
    on_reply: impl Fn(&str) + Send + 'static,
) -> io::Result<Pinger> {
    let need4 = targets.iter().any(|t| t.addrs.iter().any(IpAddr::is_ipv4));
    let need6 = targets.iter().any(|t| t.addrs.iter().any(IpAddr::is_ipv6));
    let open = |d, p| -> io::Result<Socket> {
        let s = Socket::new(d, Type::RAW, Some(p))?;
        s.set_nonblocking(true)?;
        Ok(s)
    };
    let v4 = if need4 { Some(open(Domain::IPV4, Protocol::ICMPV4)?) } else { None };
    let v6 = if need6 { Some(open(Domain::IPV6, Protocol::ICMPV6)?) } else { None };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let ident = (std::process::id() & 0xffff) as u16;
    std::thread::Builder::new().name("halo-ping".into()).spawn(move || {
        crate::rt::set_normal();
        run(&targets, interval, v4, v6, ident, &flag, &on_reply)
    })?;
    Ok(Pinger { stop })
}

fn run(
    targets: &[PingTarget],
    interval: Duration,
    v4: Option<Socket>,
    v6: Option<Socket>,
    ident: u16,
    stop: &AtomicBool,
    on_reply: &dyn Fn(&str),
) {
    let by_addr: HashMap<IpAddr, &str> =
        targets.iter().flat_map(|t| t.addrs.iter().map(move |a| (*a, t.node.as_str()))).collect();
    let mut seq: u16 = 0;
    let mut next_send = Instant::now();
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_send {
            seq = seq.wrapping_add(1);
            for (addr, _) in by_addr.iter() {
                let (sock, ty) = match addr {
                    IpAddr::V4(_) => (v4.as_ref(), 8u8),
                    IpAddr::V6(_) => (v6.as_ref(), 128u8),
                };
                if let Some(s) = sock {
                    let pkt = echo(ty, ident, seq, addr.is_ipv4());
                    let _ = s.send_to(&pkt, &SockAddr::from(SocketAddr::new(*addr, 0)));
                }
            }
            next_send = now + interval;
        }
        let wait = next_send.saturating_duration_since(Instant::now()).as_millis().min(1000) as i32;
        let mut fds: Vec<libc::pollfd> = [v4.as_ref(), v6.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait.max(1)) };
        for (s, v6) in [(v4.as_ref(), false), (v6.as_ref(), true)] {
            let Some(s) = s else { continue };
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                // SAFETY: recv_from initialised the first `n` bytes.
                let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n) };
                let Some(src) = from.as_socket().map(|a| a.ip()) else { continue };
                if is_our_reply(data, v6, ident) {
                    if let Some(node) = by_addr.get(&src) {
                        on_reply(node);
                    }
                }
            }
        }
    }
}

/// An echo request: type, code 0, checksum (ICMPv4 only: the kernel fills ICMPv6's), our
/// identifier, the sequence number, and a payload that marks it as ours.
fn echo(ty: u8, ident: u16, seq: u16, v4: bool) -> Vec<u8> {
    let mut p = vec![ty, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(MAGIC);
    if v4 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from(chunk[0]) << 8
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo reply with our identifier and payload. IPv4 raw sockets deliver the IP header
/// first; IPv6 ones do not.
fn is_our_reply(data: &[u8], v6: bool, ident: u16) -> bool {
    let icmp = if v6 {
        data
    } else {
        let Some(first) = data.first() else { return false };
        let ihl = usize::from(first & 0x0f) * 4;
        if ihl < 20 || data.len() < ihl {
            return false;
        }
        &data[ihl..]
    };
    let reply_type = if v6 { 129 } else { 0 };
    icmp.len() >= 8 + MAGIC.len()
        && icmp[0] == reply_type
        && icmp[1] == 0
        && icmp[4..6] == ident.to_be_bytes()
        && &icmp[8..8 + MAGIC.len()] == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_has_a_valid_checksum_and_only_our_replies_count() {
        let p = echo(8, 0x1234, 7, true);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        let mut reply = vec![0x45u8];
        reply.extend_from_slice(&[0; 19]);
        let mut icmp = p.clone();
        icmp[0] = 0;
        reply.extend_from_slice(&icmp);
        assert!(is_our_reply(&reply, false, 0x1234));
        assert!(!is_our_reply(&reply, false, 0x9999), "another process's identifier");
        assert!(!is_our_reply(&reply[..25], false, 0x1234), "truncated");
        assert!(!is_our_reply(&[], false, 0x1234));
        assert!(!is_our_reply(&[0x4f], false, 0x1234), "header longer than the packet");
        let mut v6 = echo(128, 1, 1, false);
        v6[0] = 129;
        assert!(is_our_reply(&v6, true, 1));
    }

    #[test]
    fn loopback_answers() {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
                panic!("raw sockets need root and HALO_REQUIRE_ROOT=1");
            }
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let target = PingTarget { node: "lo".into(), addrs: vec!["127.0.0.1".parse().unwrap()] };
        let _p = start(vec![target], Duration::from_millis(50), move |n| {
            let _ = tx.send(n.to_string());
        })
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "lo");
    }
}
