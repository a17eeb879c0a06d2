//! ping: ICMP echo, ldirectord's check_ping (Net::Ping "icmp", `checkcount` attempts). Up on
//! the first echo reply; the attempts are sent one after the other, each with an equal share
//! of the deadline.
//!
//! Sockets: an unprivileged ICMP datagram socket where `net.ipv4.ping_group_range` allows it
//! (the kernel then delivers each socket only its own replies), else a raw socket (root or
//! CAP_NET_RAW). The checks running at the same time on one runtime share one socket per
//! address family, read by one task that hands each reply to its check, so thousands of pings
//! are not thousands of raw sockets each receiving every reply. The socket's receive buffer
//! is raised to 4 MiB (forced when privileged): a round of thousands of pings gets its
//! replies in a burst, and a default-sized buffer drops most of them. The socket closes when
//! the last check using it ends.
//!
//! (surge-ping, the crate first chosen, cannot size its socket's buffer: 500 concurrent pings
//! of 127.0.0.1 lost replies with it.)

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::{fmt_duration, CheckSpec, Outcome};

const RCVBUF: usize = 4 << 20;
const PAYLOAD: &[u8; 32] = b"halo health check echo request..";

type Waiters = Arc<Mutex<HashMap<(IpAddr, u16), oneshot::Sender<()>>>>;

struct Icmp {
    sock: Arc<UdpSocket>,
    v6: bool,
    /// Identifier of our requests (raw sockets only: the kernel sets it on datagram ones).
    ident: u16,
    seq: AtomicU16,
    waiters: Waiters,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Icmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(w: &Waiters) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, u16), oneshot::Sender<()>>> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

fn open(v6: bool) -> std::io::Result<(UdpSocket, bool)> {
    let (domain, proto) =
        if v6 { (Domain::IPV6, Protocol::ICMPV6) } else { (Domain::IPV4, Protocol::ICMPV4) };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(_) => (Socket::new(domain, Type::RAW, Some(proto))?, true),
    };
    sock.set_nonblocking(true)?;
    let size = RCVBUF;
    if nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &size).is_err() {
        let _ = sock.set_recv_buffer_size(size);
    }
    let sock: std::net::UdpSocket = sock.into();
    Ok((UdpSocket::from_std(sock)?, raw))
}

impl Icmp {
    fn new(v6: bool) -> Result<Icmp, String> {
        let (sock, raw) = open(v6).map_err(|e| {
            format!("ICMP socket: {e} (ping checks need root, CAP_NET_RAW or net.ipv4.ping_group_range)")
        })?;
        let sock = Arc::new(sock);
        let waiters: Waiters = Arc::default();
        let ident = (std::process::id() as u16) ^ 0x4c44;
        let reader = tokio::spawn(read_replies(Arc::clone(&sock), v6, raw, ident, Arc::clone(&waiters)));
        Ok(Icmp { sock, v6, ident, seq: AtomicU16::new(0), waiters, reader })
    }
}

/// One shared socket per runtime (its reader task lives there) and address family.
fn shared(v6: bool) -> Result<Arc<Icmp>, String> {
    type Shared = Vec<(tokio::runtime::Id, bool, Weak<Icmp>)>;
    static SHARED: Mutex<Shared> = Mutex::new(Vec::new());
    let runtime = tokio::runtime::Handle::current().id();
    let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|(_, _, s)| s.strong_count() > 0);
    if let Some(s) = all.iter().find(|(r, f, _)| *r == runtime && *f == v6).and_then(|(_, _, s)| s.upgrade())
    {
        return Ok(s);
    }
    let s = Arc::new(Icmp::new(v6)?);
    all.push((runtime, v6, Arc::downgrade(&s)));
    Ok(s)
}

/// The echo reply in a received packet: (identifier, sequence).
fn parse_reply(packet: &[u8], v6: bool, raw: bool) -> Option<(u16, u16)> {
    // Raw IPv4 sockets receive the IP header too; IPv6 and datagram sockets do not.
    let icmp = if raw && !v6 {
        let ihl = usize::from(packet.first()? & 0x0f) * 4;
        packet.get(ihl..)?
    } else {
        packet
    };
    let header = icmp.get(..8)?;
    let echo_reply = if v6 { 129 } else { 0 };
    if header[0] != echo_reply || header[1] != 0 {
        return None;
    }
    Some((u16::from_be_bytes([header[4], header[5]]), u16::from_be_bytes([header[6], header[7]])))
}

async fn read_replies(sock: Arc<UdpSocket>, v6: bool, raw: bool, ident: u16, waiters: Waiters) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => {
                // Not expected on an unconnected socket; never spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some((id, seq)) = parse_reply(buf.get(..n).unwrap_or_default(), v6, raw) else { continue };
        if raw && id != ident {
            continue;
        }
        if let Some(tx) = lock(&waiters).remove(&(from.ip(), seq)) {
            let _ = tx.send(());
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum = sum.wrapping_add(u32::from(word));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(PAYLOAD);
    // The kernel computes ICMPv6 checksums (they cover the IPv6 pseudo-header).
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Removes a waiter that got no reply (timeout, or the check was dropped).
struct Pending<'a> {
    icmp: &'a Icmp,
    key: (IpAddr, u16),
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.icmp.waiters).remove(&self.key);
    }
}

async fn echo(icmp: &Icmp, ip: IpAddr, wait: Duration) -> Result<Option<Duration>, String> {
    let seq = icmp.seq.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    lock(&icmp.waiters).insert((ip, seq), tx);
    let _pending = Pending { icmp, key: (ip, seq) };
    let packet = echo_request(icmp.v6, icmp.ident, seq);
    let sent = Instant::now();
    icmp.sock.send_to(&packet, SocketAddr::new(ip, 0)).await.map_err(|e| format!("ping {ip}: {e}"))?;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(())) => Ok(Some(sent.elapsed())),
        Ok(Err(_)) | Err(_) => Ok(None),
    }
}

pub(crate) async fn check(spec: &CheckSpec) -> Outcome {
    let ip: IpAddr = spec.target.ip();
    let icmp = shared(ip.is_ipv6())?;
    let attempts = spec.attempts.max(1);
    let per_attempt = (spec.timeout / attempts).max(Duration::from_millis(1));
    let mut last = String::new();
    for attempt in 1..=attempts {
        let started = Instant::now();
        match echo(&icmp, ip, per_attempt).await {
            Ok(Some(rtt)) => {
                return Ok(format!("echo reply from {ip} in {rtt:.1?} (attempt {attempt}/{attempts})"))
            }
            Ok(None) => {
                last = format!(
                    "no echo reply from {ip} within {} ({attempts} attempt(s))",
                    fmt_duration(per_attempt)
                );
            }
            Err(e) => {
                last = e;
                // A send error is not a lost packet: wait out this attempt's share, never spin.
                tokio::time::sleep(per_attempt.saturating_sub(started.elapsed())).await;
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        // An echo reply after a 20-byte IPv4 header, as a raw socket receives it.
        let mut reply = vec![0x45u8];
        reply.extend_from_slice(&[0; 19]);
        reply.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert_eq!(parse_reply(&reply, false, true), Some((0x1234, 7)));
        assert_eq!(parse_reply(&reply[20..], false, false), Some((0x1234, 7)));
        assert_eq!(parse_reply(&p, false, false), None, "a request is not a reply");
        assert_eq!(parse_reply(&[0x4f], false, true), None);
        assert_eq!(parse_reply(&[], false, true), None);
        assert_eq!(parse_reply(&[129, 0, 0, 0, 0, 1, 0, 2], true, true), Some((1, 2)));
    }
}
