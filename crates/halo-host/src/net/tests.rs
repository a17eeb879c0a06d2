use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::serial::{Framer, MAX_FRAME};
use super::*;
use crate::testutil::{free_udp_port, require_root, skip, Netns};

/// Polls every fd of `links` and collects messages until `pred` holds or 3 s pass.
fn recv_until(links: &mut Links, pred: impl Fn(&[(usize, Vec<u8>)]) -> bool) -> Vec<(usize, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    while !pred(&got) && Instant::now() < deadline {
        let fds = links.poll_fds();
        let ready: Vec<RawFd> = {
            // SAFETY (test): the fds belong to `links`, which outlives this block.
            let borrowed: Vec<BorrowedFd<'_>> =
                fds.iter().map(|&(_, fd)| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
            let mut pfds: Vec<PollFd<'_>> =
                borrowed.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
            let _ = nix::poll::poll(&mut pfds, PollTimeout::from(100u16));
            pfds.iter()
                .zip(&fds)
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, &(_, fd))| fd)
                .collect()
        };
        for fd in ready {
            links.recv(fd, &mut got).expect("recv");
        }
    }
    got
}

fn count(got: &[(usize, Vec<u8>)], link: usize, msg: &[u8]) -> usize {
    got.iter().filter(|(l, m)| *l == link && m == msg).count()
}

fn open_err(specs: &[LinkSpec], port: u16) -> String {
    match Links::open(specs, port) {
        Ok(l) => panic!("expected an error, opened {l:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn open_errors_name_the_medium() {
    let bcast = |iface: &str| LinkSpec::Bcast { iface: iface.into() };
    assert_eq!(open_err(&[bcast("halonope9")], 694), "bcast halonope9: no such interface");
    assert_eq!(open_err(&[bcast("lo")], 694), "bcast lo: interface has no IPv4 broadcast address");
    assert_eq!(open_err(&[bcast("lo")], 0), "bcast lo: port 0 is not usable");
    let mcast = LinkSpec::Mcast {
        iface: "lo".into(),
        group: Ipv4Addr::new(10, 0, 0, 1),
        port: 694,
        ttl: 1,
        looped: false,
    };
    assert_eq!(open_err(&[mcast], 694), "mcast lo 10.0.0.1: not a multicast group");
    let ucast = |peer: &str| LinkSpec::Ucast { iface: "lo".into(), peer: peer.into() };
    assert_eq!(open_err(&[ucast("::1")], 694), "ucast lo ::1: peer is not an IPv4 address");
    let ucast6 = LinkSpec::Ucast6 { iface: "lo".into(), peer: "127.0.0.1".into() };
    assert_eq!(open_err(&[ucast6], 694), "ucast6 lo 127.0.0.1: peer is not an IPv6 address");
    let serial = LinkSpec::Serial { device: "/nonexistent/ttyS9".into(), baud: 19200 };
    assert!(open_err(&[serial], 694).starts_with("serial /nonexistent/ttyS9: open: "));
}

#[test]
fn peer_resolution() {
    let r = |peer: &str, v6: bool| sock::resolve_peer(peer, 694, v6, 7, "m").map_err(|e| e.to_string());
    assert_eq!(r("10.0.0.2", false), Ok("10.0.0.2:694".parse().expect("addr")));
    assert_eq!(r("10.0.0.2:7000", false), Ok("10.0.0.2:7000".parse().expect("addr")));
    assert_eq!(r("localhost", false), Ok("127.0.0.1:694".parse().expect("addr")));
    let ll = r("fe80::1", true).expect("link-local");
    assert!(matches!(ll, SocketAddr::V6(s) if s.scope_id() == 7 && s.port() == 694));
    let scoped = r("fe80::1%3", true).expect("scoped");
    assert!(matches!(scoped, SocketAddr::V6(s) if s.scope_id() == 3));
    let scoped = r("fe80::1%lo", true).expect("scoped by name");
    assert!(matches!(scoped, SocketAddr::V6(s) if s.scope_id() == 1));
    assert_eq!(r("fd00::2", true), Ok("[fd00::2]:694".parse().expect("addr")));
    assert_eq!(r("[fd00::2]:9", true), Ok("[fd00::2]:9".parse().expect("addr")));
    assert_eq!(r("localhost:9", false), Ok("127.0.0.1:9".parse().expect("addr")));
    assert_eq!(r("localhost:x", false), Err("m: bad port \"x\"".to_string()));
}

#[test]
fn ucast_over_lo() {
    if !require_root("ucast_over_lo") {
        return;
    }
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let ucast = |peer: String| LinkSpec::Ucast { iface: "lo".into(), peer };
    // A sends to B's port twice over (two media, one link); B sends to A's port.
    let mut a = Links::open(
        &[
            ucast(format!("127.0.0.1:{pb}")),
            ucast(format!("localhost:{pb}")),
            ucast(format!("127.0.0.1:{pb}")),
        ],
        pa,
    )
    .expect("open A");
    let mut b = Links::open(&[ucast(format!("127.0.0.1:{pa}"))], pb).expect("open B");
    assert_eq!((a.len(), a.name(0), a.kind(0)), (1, "lo", "ucast"));
    assert_eq!(a.poll_fds().len(), 1, "one receive socket per (iface, port)");
    assert_eq!(a.name(5), "");

    assert!(a.send_all(b"from-a", b">>>\nignored\n<<<\n").is_empty());
    let got = recv_until(&mut b, |g| g.len() >= 2);
    assert_eq!(count(&got, 0, b"from-a"), 2, "{got:?}");
    assert_eq!(a.stats(0).tx_packets, 2);
    assert_eq!(a.stats(0).tx_bytes, 12);
    let s = b.stats(0);
    assert_eq!((s.rx_packets, s.rx_bytes), (2, 12));

    assert!(b.send_all(b"from-b", b"").is_empty());
    let got = recv_until(&mut a, |g| !g.is_empty());
    assert_eq!(got, vec![(0, b"from-b".to_vec())]);

    // Nothing more is readable: recv returns at once with nothing.
    let mut none = Vec::new();
    let fd = a.poll_fds()[0].1;
    a.recv(fd, &mut none).expect("empty recv");
    assert!(none.is_empty());
    assert!(a.recv(-1, &mut none).is_err());
}

/// Sets up two private namespaces joined by a veth pair hv0 (10.77.0.1, fd00:77::1) —
/// hv1 (10.77.0.2, fd00:77::2).
fn veth_pair() -> Result<(Netns, Netns), String> {
    let a = Netns::new()?;
    let b = Netns::new()?;
    a.ip(&format!("link add hv0 type veth peer name hv1 netns {}", b.id()))?;
    a.ip("addr add 10.77.0.1/24 brd + dev hv0")?;
    b.ip("addr add 10.77.0.2/24 brd + dev hv1")?;
    a.ip("link set hv0 up")?;
    b.ip("link set hv1 up")?;
    Ok((a, b))
}

#[test]
fn bcast_mcast_ucast_over_veth() {
    if !require_root("bcast_mcast_ucast_over_veth") {
        return;
    }
    let (nsa, nsb) = match veth_pair() {
        Ok(p) => p,
        Err(e) => return skip("bcast_mcast_ucast_over_veth", &e),
    };
    let group = Ipv4Addr::new(239, 192, 0, 9);
    let media = |iface: &str, peer: &str| {
        vec![
            LinkSpec::Bcast { iface: iface.into() },
            LinkSpec::Mcast { iface: iface.into(), group, port: 7001, ttl: 1, looped: false },
            LinkSpec::Ucast { iface: iface.into(), peer: peer.into() },
        ]
    };
    let (mut ma, mb) = (media("hv0", "10.77.0.2"), media("hv1", "10.77.0.1"));
    // A second link on the same udpport, to check that packets land on the right one.
    ma.push(LinkSpec::Ucast { iface: "lo".into(), peer: "127.0.0.1".into() });
    let mut a = nsa.run(move || Links::open(&ma, 694)).expect("open A");
    let mut b = nsb.run(move || Links::open(&mb, 694)).expect("open B");
    assert_eq!((a.len(), a.name(0), a.kind(0)), (2, "hv0", "bcast"));
    assert_eq!((a.name(1), a.kind(1)), ("lo", "ucast"));
    let fds = a.poll_fds();
    assert_eq!(fds.iter().filter(|(l, _)| *l == 0).count(), 2, "udpport + mcast port");
    assert_eq!(fds.iter().filter(|(l, _)| *l == 1).count(), 1);

    // The first packets after a veth comes up can be lost (ARP resolution, multicast
    // join still settling): send numbered rounds until one round arrives on all three media.
    let (got, round) = until_all_three(&mut a, &mut b, "from-a");
    assert_eq!(count(&got, 0, round.as_bytes()), 3, "bcast + mcast + ucast: {got:?}");
    assert!(a.stats(0).tx_packets >= 3);
    // A's own ucast over lo comes back on link 1 only.
    let got = recv_until(&mut a, |g| count(g, 1, round.as_bytes()) >= 1);
    assert_eq!(count(&got, 1, round.as_bytes()), 1, "{got:?}");

    let (got, round) = until_all_three(&mut b, &mut a, "from-b");
    assert_eq!(count(&got, 0, round.as_bytes()), 3, "{got:?}");
    assert_eq!(count(&got, 1, round.as_bytes()), 0, "{got:?}");
    assert!(b.stats(0).rx_packets >= 3);
}

/// Sends numbered rounds from `from` until one round reaches `to` on all three media of
/// link 0; returns what was received in that round and the round's payload.
fn until_all_three(from: &mut Links, to: &mut Links, tag: &str) -> (Vec<(usize, Vec<u8>)>, String) {
    for round in 0..10 {
        let payload = format!("{tag}-{round}");
        assert!(from.send_all(payload.as_bytes(), b"").is_empty());
        let got = recv_until(to, |g| count(g, 0, payload.as_bytes()) >= 3);
        if count(&got, 0, payload.as_bytes()) >= 3 {
            return (got, payload);
        }
    }
    panic!("no round of {tag} arrived on all three media");
}

#[test]
fn links_can_move_to_the_heartbeat_thread() {
    fn check<T: Send>() {}
    check::<Links>();
}

#[test]
fn mcast6_ucast6_over_veth() {
    if !require_root("mcast6_ucast6_over_veth") {
        return;
    }
    if !std::path::Path::new("/proc/net/if_inet6").exists() {
        return skip("mcast6_ucast6_over_veth", "no IPv6 in this kernel");
    }
    let setup = || -> Result<(Netns, Netns), String> {
        let (a, b) = veth_pair()?;
        a.ip("-6 addr add fd00:77::1/64 dev hv0 nodad")?;
        b.ip("-6 addr add fd00:77::2/64 dev hv1 nodad")?;
        Ok((a, b))
    };
    let (nsa, nsb) = match setup() {
        Ok(p) => p,
        Err(e) => return skip("mcast6_ucast6_over_veth", &e),
    };
    let group: Ipv6Addr = "ff02::4242".parse().expect("group");
    let media = |iface: &str, peer: &str| {
        vec![
            LinkSpec::Mcast6 { iface: iface.into(), group, port: 7002, hops: 1 },
            LinkSpec::Ucast6 { iface: iface.into(), peer: peer.into() },
        ]
    };
    let (ma, mb) = (media("hv0", "fd00:77::2"), media("hv1", "fd00:77::1"));
    let mut a = nsa.run(move || Links::open(&ma, 694)).expect("open A");
    let mut b = nsb.run(move || Links::open(&mb, 694)).expect("open B");
    assert_eq!((a.len(), a.kind(0)), (1, "mcast6"));
    // Neighbour discovery may swallow the very first unicast; send until both arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < deadline && !(count(&got, 0, b"v6") >= 1 && got.len() >= 2) {
        assert!(a.send_all(b"v6", b"").is_empty());
        got.extend(recv_until(&mut b, |g| g.len() >= 2));
    }
    let ports: Vec<u16> = b.rx.iter().map(|r| r.port).collect();
    assert!(ports.contains(&7002) && ports.contains(&694));
    assert!(count(&got, 0, b"v6") >= 2, "mcast6 and ucast6 both delivered: {got:?}");
}

#[test]
fn mcast_looped_on_lo() {
    if !require_root("mcast_looped_on_lo") {
        return;
    }
    let ns = match Netns::new().and_then(|ns| ns.ip("link set lo multicast on").map(|()| ns)) {
        Ok(ns) => ns,
        Err(e) => return skip("mcast_looped_on_lo", &e),
    };
    let spec = vec![LinkSpec::Mcast {
        iface: "lo".into(),
        group: Ipv4Addr::new(239, 192, 0, 1),
        port: 7003,
        ttl: 0,
        looped: true,
    }];
    let mut l = ns.run(move || Links::open(&spec, 694)).expect("open mcast lo");
    assert!(l.send_all(b"looped", b"").is_empty());
    let got = recv_until(&mut l, |g| !g.is_empty());
    assert_eq!(got, vec![(0, b"looped".to_vec())]);
    let err =
        ns.run(|| Links::open(&[LinkSpec::Bcast { iface: "lo".into() }], 694)).err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("bcast lo: interface has no IPv4 broadcast address"));
}

fn pty() -> (OwnedFd, std::path::PathBuf) {
    let p = nix::pty::openpty(None, None).expect("openpty");
    let path = nix::unistd::ttyname(p.slave.as_fd()).expect("ttyname");
    // The slave stays open through `Links`; closing ours does not hang the line up.
    drop(p.slave);
    (p.master, path)
}

fn serial_links(path: &std::path::Path) -> Links {
    Links::open(&[LinkSpec::Serial { device: path.to_path_buf(), baud: 19200 }], 694).expect("open serial")
}

#[test]
fn serial_frames_over_pty() {
    let (master, path) = pty();
    let mut links = serial_links(&path);
    assert_eq!((links.len(), links.kind(0)), (1, "serial"));
    assert_eq!(links.name(0), path.display().to_string());

    // Outbound: serial links get the classic bytes, untouched by output processing.
    let classic = b">>>\nt=status\nsrc=nodea\n<<<\n";
    assert!(links.send_all(b"###\nnetstring%%%\n", classic).is_empty());
    let mut m = std::fs::File::from(master);
    let mut buf = vec![0u8; classic.len()];
    m.read_exact(&mut buf).expect("read master");
    assert_eq!(&buf[..], &classic[..]);

    // Inbound: split frames reassemble, garbage before ">>>" is skipped, an oversize frame is
    // dropped and the stream resyncs on the next one. A writer thread feeds the master side.
    let mut writer = m.try_clone().expect("clone master");
    let feeder = std::thread::spawn(move || {
        let mut big = b">>>\n".to_vec();
        while big.len() <= MAX_FRAME + 1000 {
            big.extend_from_slice(&[b'x'; 99]);
            big.push(b'\n');
        }
        big.extend_from_slice(b"<<<\n");
        let chunks: [&[u8]; 5] =
            [b"\0garbage>>", b">\nt=one\n", b"<<<\n>>>\nt=two\n<<<\n", &big, b">>>\nt=three\n<<<\n"];
        for c in chunks {
            writer.write_all(c).expect("write master");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let got = recv_until(&mut links, |g| g.len() >= 3);
    feeder.join().expect("feeder");
    let frames: Vec<&[u8]> = got.iter().map(|(_, f)| f.as_slice()).collect();
    assert_eq!(
        frames,
        vec![&b">>>\nt=one\n<<<\n"[..], &b">>>\nt=two\n<<<\n"[..], &b">>>\nt=three\n<<<\n"[..]]
    );
    let s = links.stats(0);
    assert_eq!(s.rx_packets, 3);
    assert_eq!(s.rx_errors, 1, "the oversize frame");
    assert!(s.rx_bytes > MAX_FRAME as u64);
}

#[test]
fn serial_full_tty_drops_whole_frames() {
    let (master, path) = pty();
    let mut links = serial_links(&path);
    let frame = |i: usize| {
        let mut f = format!(">>>\nseq={i}\n").into_bytes();
        f.extend_from_slice(&[b'p'; 900]);
        f.extend_from_slice(b"\n<<<\n");
        f
    };
    // Nobody reads the master: the pty fills up and frames are dropped, never blocking.
    let mut sent = 0;
    while links.stats(0).tx_dropped < 3 && sent < 10_000 {
        assert!(links.send_all(b"", &frame(sent)).is_empty());
        sent += 1;
    }
    assert!(links.stats(0).tx_dropped >= 3, "the tty never filled up");

    // Drain the master, let the link finish a partly written frame, and check that what came
    // out is a sequence of whole frames.
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
        .expect("nonblock master");
    let mut m = std::fs::File::from(master);
    let mut framer = Framer::default();
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 65536];
    for round in 0..20 {
        loop {
            match m.read(&mut buf) {
                Ok(n) if n > 0 => framer.push(&buf[..n], &mut |f| frames.push(f)),
                _ => break,
            }
        }
        if round < 19 {
            assert!(links.send_all(b"", &frame(100_000 + round)).is_empty());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(framer.resyncs, 0, "frames never interleave");
    assert!(frames.len() > 3);
    for f in &frames {
        let text = String::from_utf8_lossy(f);
        let seq: usize = text
            .strip_prefix(">>>\nseq=")
            .and_then(|t| t.split('\n').next())
            .and_then(|n| n.parse().ok())
            .expect("a seq line");
        assert_eq!(f, &frame(seq));
    }
    assert!(frames.contains(&frame(100_018)), "link recovered once drained");
}
