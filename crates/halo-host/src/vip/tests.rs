//! Root-only tests in a private network namespace: a veth pair hv0 (192.0.2.1/24,
//! 2001:db8:77::1/64) — hv1, documentation addresses only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::icmpv6::{NdpOptionSlice, NeighborAdvertisementPayloadSlice};
use etherparse::{
    ArpOperation, EtherType, Icmpv6Slice, Icmpv6Type, Ipv6Slice, LinkSlice, NetSlice, SlicedPacket,
};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::*;
use crate::testutil::{capture, dual_stack_veth as setup, sniffer, Netns};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// `ip ARGS` in the namespace, its standard output.
fn ip_out(ns: &Netns, args: &str) -> String {
    let args: Vec<String> = args.split_whitespace().map(String::from).collect();
    ns.run(move || {
        let out = Command::new("ip").args(&args).output().expect("run ip");
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

fn resolve_in(ns: &Netns, spec: &str) -> Result<Resolved, String> {
    let spec = parse_ip_spec(spec).expect("spec");
    ns.run(move || resolve(&spec).map_err(|e| e.to_string()))
}

fn present_in(ns: &Netns, a: &str) -> Option<AddrInfo> {
    let a = ip(a);
    ns.run(move || present(a).expect("present"))
}

/// hv0's MAC address as `ip link` shows it.
fn mac_of(ns: &Netns, iface: &str) -> [u8; 6] {
    let out = ip_out(ns, &format!("link show {iface}"));
    let hex = out.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("link/ether");
    let v: Vec<u8> = hex.split(':').map(|b| u8::from_str_radix(b, 16).expect("hex")).collect();
    v.try_into().expect("6 bytes")
}

#[test]
fn vip_add_remove_present_labels() {
    let Some(ns) = setup("vip_add_remove_present_labels") else { return };
    let r = resolve_in(&ns, "192.0.2.10/24/hv0:0").expect("resolve");
    assert_eq!(
        (r.prefix, r.iface.as_str(), r.label.as_deref(), r.broadcast),
        (24, "hv0", Some("hv0:0"), Some(Ipv4Addr::new(192, 0, 2, 255)))
    );
    assert!(present_in(&ns, "192.0.2.10").is_none());
    let r2 = r.clone();
    ns.run(move || {
        add(&r2).expect("add");
        add(&r2).expect("add again is fine");
    });
    let p = present_in(&ns, "192.0.2.10").expect("present after add");
    assert_eq!((p.iface.as_str(), p.prefix, p.label.as_deref()), ("hv0", 24, Some("hv0:0")));
    assert_eq!(p.ifindex, r.ifindex);
    let shown = ip_out(&ns, "-4 addr show dev hv0");
    assert!(shown.contains("inet 192.0.2.10/24 brd 192.0.2.255 scope global secondary hv0:0"), "{shown}");

    assert_eq!(ns.run(|| next_free_label("hv0")).expect("label"), "hv0:1");
    let r3 = resolve_in(&ns, "192.0.2.11/24/hv0:1").expect("resolve");
    ns.run(move || add(&r3).expect("add hv0:1"));
    assert_eq!(ns.run(|| next_free_label("hv0")).expect("label"), "hv0:2");

    let r2 = r.clone();
    ns.run(move || {
        remove(&r2).expect("remove");
        remove(&r2).expect("remove again is fine");
    });
    assert!(present_in(&ns, "192.0.2.10").is_none());
    assert_eq!(ns.run(|| next_free_label("hv0")).expect("label"), "hv0:0", "freed");
    assert!(present_in(&ns, "192.0.2.11").is_some(), "the other alias stays");
    let e = ns.run(|| next_free_label("nope0")).expect_err("no such interface");
    assert!(matches!(e, VipError::NoSuchInterface { .. }), "{e}");

    // Removing takes the address off whatever prefix it got there.
    ns.ip("addr add 192.0.2.12/28 dev hv0").expect("ip addr add");
    let r4 = resolve_in(&ns, "192.0.2.12/24/hv0").expect("resolve");
    ns.run(move || remove(&r4).expect("remove /28 via a /24 spec"));
    assert!(present_in(&ns, "192.0.2.12").is_none());

    // IPv6, added without DAD: usable at once.
    let r6 = resolve_in(&ns, "2001:db8:77::10").expect("resolve v6");
    assert_eq!((r6.prefix, r6.iface.as_str(), r6.broadcast, r6.label.as_deref()), (64, "hv0", None, None));
    let r6b = r6.clone();
    ns.run(move || add(&r6b).expect("add v6"));
    let p = present_in(&ns, "2001:db8:77::10").expect("v6 present");
    assert_eq!((p.iface.as_str(), p.prefix, p.tentative, p.dad_failed), ("hv0", 64, false, false));
    let shown = ip_out(&ns, "-6 addr show dev hv0");
    let line = shown.lines().find(|l| l.contains("2001:db8:77::10/64")).unwrap_or_default();
    assert!(line.contains("scope global nodad deprecated") && !line.contains("tentative"), "{shown}");
    // Deprecated (preferred_lft 0), valid for ever: never the node's default source address.
    let life = shown.lines().skip_while(|l| !l.contains("2001:db8:77::10/64")).nth(1).unwrap_or_default();
    assert!(life.contains("valid_lft forever preferred_lft 0sec"), "{shown}");
    let src = ip_out(&ns, "-6 route get 2001:db8:77::99");
    assert!(!src.contains("src 2001:db8:77::10"), "the VIP is not the source: {src}");
    let r6b = r6.clone();
    ns.run(move || {
        add(&r6b).expect("add v6 again");
        remove(&r6b).expect("remove v6");
        remove(&r6b).expect("remove v6 again");
    });
    assert!(present_in(&ns, "2001:db8:77::10").is_none());

    // The kernel's refusal comes back with the errno and what was being done.
    let gone = Resolved { ifindex: 9999, ..r.clone() };
    let e = ns.run(move || add(&gone)).expect_err("no such interface index");
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    assert!(e.to_string().starts_with("add 192.0.2.10/24 on hv0: set hv0 up: "), "{e}");
    let bad = Resolved { prefix: 33, ..r.clone() };
    let e = ns.run(move || add(&bad)).expect_err("prefix 33");
    assert!(matches!(e, VipError::Unsupported { .. }), "{e}");

    // add brings the interface up, like IPaddr2's `ip link set <nic> up`.
    ns.ip("link add hv2 type veth peer name hv3").expect("veth 2");
    let down = resolve_in(&ns, "198.51.100.10/24/hv2").expect("resolve on a down link");
    assert!(!ip_out(&ns, "link show hv2").contains(",UP"), "starts down");
    ns.run(move || add(&down).expect("add on a down link"));
    assert!(ip_out(&ns, "link show hv2").contains(",UP"), "brought up");
    let p = present_in(&ns, "198.51.100.10").expect("present");
    assert_eq!((p.iface.as_str(), p.label.as_deref()), ("hv2", Some("hv2")));
}

#[test]
fn vip_findif() {
    let Some(ns) = setup("vip_findif") else { return };
    for s in [
        "route add 192.0.2.64/26 dev hv1",
        "route add default via 192.0.2.254",
        "route add 198.51.100.0/24 via 192.0.2.254",
    ] {
        ns.ip(s).expect(s);
    }
    let summary = |s: &str| {
        resolve_in(&ns, s).map(|r| {
            let b = r.broadcast.map(|b| format!(" brd {b}")).unwrap_or_default();
            format!("{}/{} {}{b}", r.addr, r.prefix, r.iface)
        })
    };
    assert_eq!(summary("192.0.2.10").as_deref(), Ok("192.0.2.10/24 hv0 brd 192.0.2.255"));
    assert_eq!(summary("192.0.2.70").as_deref(), Ok("192.0.2.70/26 hv1 brd 192.0.2.127"), "longest prefix");
    assert_eq!(
        summary("192.0.2.70/24").as_deref(),
        Ok("192.0.2.70/24 hv0 brd 192.0.2.255"),
        "no longer than /24"
    );
    assert_eq!(summary("192.0.2.70/28").as_deref(), Ok("192.0.2.70/28 hv1 brd 192.0.2.79"));
    assert_eq!(summary("192.0.2.10/24/192.0.2.127").as_deref(), Ok("192.0.2.10/24 hv0 brd 192.0.2.127"));
    assert_eq!(summary("192.0.2.10/32").as_deref(), Ok("192.0.2.10/32 hv0"), "no broadcast for /32");
    // Interface and prefix given: no route needed.
    assert_eq!(summary("203.0.113.5/24/hv1").as_deref(), Ok("203.0.113.5/24 hv1 brd 203.0.113.255"));
    // Interface given, prefix found from the routes through it.
    let spec = VipSpec { iface: Some("hv0".into()), ..parse_ip_spec("192.0.2.70").expect("spec") };
    let r = ns.run(move || resolve(&spec)).expect("resolve via hv0");
    assert_eq!((r.iface.as_str(), r.prefix), ("hv0", 24));
    let spec = VipSpec { iface: Some("hv1".into()), ..parse_ip_spec("192.0.2.10").expect("spec") };
    let e = ns.run(move || resolve(&spec).map_err(|e| e.to_string())).expect_err("no route on hv1");
    assert_eq!(e, "192.0.2.10: no route covers it on hv1; give prefix and interface (ip/bits/iface)");
    // The default route and routes through a gateway do not count.
    assert_eq!(
        summary("203.0.113.5"),
        Err("203.0.113.5: no route covers it; give prefix and interface (ip/bits/iface)".into())
    );
    assert!(summary("198.51.100.7").is_err(), "via a gateway");
    assert!(summary("192.0.2.10/16").is_err(), "no /16 route covers it");
    assert_eq!(summary("192.0.2.10/24/nope0"), Err("interface \"nope0\": no such interface".into()));
    // Loopback addresses go on lo, as in findif.
    assert_eq!(summary("127.0.0.2").as_deref(), Ok("127.0.0.2/8 lo brd 127.255.255.255"));
    // IPv6.
    assert_eq!(summary("2001:db8:77::20").as_deref(), Ok("2001:db8:77::20/64 hv0"));
    assert!(summary("2001:db8:99::1").is_err());
}

#[test]
fn vip_loopback_take_restore() {
    let Some(ns) = setup("vip_loopback_take_restore") else { return };
    ns.ip("addr add 192.0.2.80/32 dev lo").expect("vip on lo");
    ns.ip("addr add 192.0.2.81/24 dev lo").expect("not a host address");
    ns.ip("-6 addr add 2001:db8:77::80/128 dev lo").expect("v6 vip on lo");

    for (vip, prefix) in [("192.0.2.80", 32), ("2001:db8:77::80", 128)] {
        let a = ip(vip);
        let save = ns.run(move || take_from_loopback(a)).expect("take").expect("was on lo");
        assert_eq!((save.addr, save.prefix, save.iface.as_str()), (a, prefix, "lo"));
        assert!(present_in(&ns, vip).is_none(), "{vip} gone from lo");
        assert_eq!(ns.run(move || take_from_loopback(a)).expect("take again"), None);

        // The LVS-DR director's takeover: the VIP moves to the NIC, then back to lo.
        let r = resolve_in(&ns, vip).expect("resolve");
        assert_eq!(r.iface, "hv0");
        let s2 = save.clone();
        ns.run(move || {
            add(&r).expect("add on hv0");
            remove(&r).expect("remove from hv0");
            restore_loopback(&s2).expect("restore");
            restore_loopback(&s2).expect("restore again is fine");
        });
        let p = present_in(&ns, vip).expect("back on lo");
        assert_eq!((p.iface.as_str(), p.prefix), ("lo", prefix));
    }
    // Only host addresses are the hidden LVS address.
    assert_eq!(ns.run(|| take_from_loopback(ip("192.0.2.81"))).expect("take"), None);
    assert!(present_in(&ns, "192.0.2.81").is_some());
    // An address on another interface is left alone.
    ns.ip("addr add 192.0.2.82/32 dev hv0").expect("host address on hv0");
    assert_eq!(ns.run(|| take_from_loopback(ip("192.0.2.82"))).expect("take"), None);
    assert!(present_in(&ns, "192.0.2.82").is_some());
}

#[test]
fn vip_announce_arp() {
    let Some(ns) = setup("vip_announce_arp") else { return };
    let mac = mac_of(&ns, "hv0");
    let rx = sniffer(&ns, "hv1");
    // Not configured on hv0, so every ARP frame about it is ours.
    let r = resolve_in(&ns, "192.0.2.99/24/hv0").expect("resolve");
    let vip = [192u8, 0, 2, 99];
    let (count, interval) = (3, Duration::from_millis(60));
    let start = Instant::now();
    let stats = ns.run(move || announce(&r, count, interval)).expect("announce");
    let took = start.elapsed();
    assert_eq!((stats.arp_requests, stats.arp_replies, stats.failed, stats.sent()), (3, 3, 0, 6));
    // One frame every interval/2: five gaps between six frames.
    assert!(took >= interval * 5 / 2, "paced: {took:?}");

    let is_ours = |f: &[u8]| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[28..32] == vip;
    let frames = capture(&rx, 6, is_ours);
    assert_eq!(frames.len(), 6, "three request/reply pairs");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.len(), 42, "frame {i}");
        let p = SlicedPacket::from_ethernet(f).expect("parses");
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("ethernet") };
        assert_eq!((eth.destination(), eth.source(), eth.ether_type()), ([0xff; 6], mac, EtherType::ARP));
        let Some(NetSlice::Arp(arp)) = p.net else { panic!("arp") };
        let arp = arp.to_packet().try_eth_ipv4().expect("eth/ipv4 arp");
        let (op, tha) = if i % 2 == 0 { (ArpOperation::REQUEST, [0; 6]) } else { (ArpOperation::REPLY, mac) };
        assert_eq!(arp.operation, op, "frame {i}: request, reply, request, ...");
        assert_eq!((arp.sender_mac, arp.sender_ipv4), (mac, vip), "frame {i}");
        assert_eq!((arp.target_mac, arp.target_ipv4), (tha, vip), "frame {i}");
    }

    // The step API: the caller paces; nothing is left after count pairs.
    let r = resolve_in(&ns, "192.0.2.98/24/hv0").expect("resolve");
    let (waits, stats, a_mac) = ns.run(move || {
        let mut a = Announcer::open(&r, 2, Duration::from_millis(10)).expect("open");
        let mut waits = Vec::new();
        while let Some(w) = a.send_next() {
            waits.push(w);
        }
        assert!(a.done() && a.send_next().is_none());
        (waits, a.stats().clone(), a.mac())
    });
    assert_eq!(waits, vec![Duration::from_millis(5); 3]);
    assert_eq!(stats.sent(), 4);
    assert_eq!(a_mac, mac);

    // Nothing to announce on lo.
    let lo = resolve_in(&ns, "127.0.0.9").expect("resolve lo");
    let e = ns.run(move || announce(&lo, 1, Duration::ZERO).map_err(|e| e.to_string())).expect_err("lo");
    assert!(e.contains("not an Ethernet interface"), "{e}");
}

#[test]
fn vip_announce_neighbour_advert() {
    let Some(ns) = setup("vip_announce_neighbour_advert") else { return };
    let mac = mac_of(&ns, "hv0");
    let rx = sniffer(&ns, "hv1");
    let vip: Ipv6Addr = "2001:db8:77::99".parse().expect("ip");
    let all_nodes: Ipv6Addr = "ff02::1".parse().expect("ip");
    let r = resolve_in(&ns, "2001:db8:77::99").expect("resolve");
    let stats = ns.run(move || announce(&r, 2, Duration::from_millis(20))).expect("announce");
    assert_eq!((stats.neighbour_adverts, stats.arp_requests, stats.failed), (2, 0, 0));

    let is_ours = |f: &[u8]| {
        f.len() >= 78 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 136 && f[62..78] == vip.octets()
    };
    let frames = capture(&rx, 2, is_ours);
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert_eq!(f.len(), 86);
        let p = SlicedPacket::from_ethernet(f).expect("parses");
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("ethernet") };
        assert_eq!(
            (eth.destination(), eth.source(), eth.ether_type()),
            ([0x33, 0x33, 0, 0, 0, 1], mac, EtherType::IPV6)
        );
        let ip6 = Ipv6Slice::from_slice(&f[14..]).expect("ipv6");
        let h = ip6.header();
        assert_eq!((h.source_addr(), h.destination_addr(), h.hop_limit()), (vip, all_nodes, 255));
        let icmp = Icmpv6Slice::from_slice(&f[54..]).expect("icmpv6");
        assert!(icmp.is_checksum_valid(vip.octets(), all_nodes.octets()), "checksum");
        assert_eq!(icmp.code_u8(), 0);
        let Icmpv6Type::NeighborAdvertisement(na) = icmp.icmp_type() else { panic!("NA") };
        assert!(na.r#override && !na.solicited && !na.router, "{na:?}");
        let payload = NeighborAdvertisementPayloadSlice::from_slice(icmp.payload()).expect("NA payload");
        assert_eq!(payload.target_address(), vip);
        let opts: Vec<_> = payload.options_iterator().collect();
        let [Ok(NdpOptionSlice::TargetLinkLayerAddress(tll))] = opts.as_slice() else { panic!("{opts:?}") };
        assert_eq!(tll.link_layer_address(), &mac);
    }
}

/// Polls the watch (drained on the namespace's thread) until `pred` holds or 3 s pass.
fn watch_until(ns: &Netns, w: AddrWatch, pred: impl Fn(&[AddrEvent]) -> bool) -> (AddrWatch, Vec<AddrEvent>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut w = w;
    let mut all = Vec::new();
    while !pred(&all) && Instant::now() < deadline {
        let mut p = [PollFd::new(w.fd(), PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut p, PollTimeout::from(100u16));
        let (back, ev) = ns.run(move || {
            let ev = w.drain();
            (w, ev)
        });
        w = back;
        all.extend(ev);
    }
    (w, all)
}

#[test]
fn vip_watch_reports_removal() {
    let Some(ns) = setup("vip_watch_reports_removal") else { return };
    let w = ns.run(AddrWatch::open).expect("watch");
    ns.ip("addr add 192.0.2.50/24 dev hv0 label hv0:7").expect("add");
    let added = |e: &AddrEvent, a: &str| matches!(e, AddrEvent::Added(i) if i.addr == ip(a));
    let (w, ev) = watch_until(&ns, w, |ev| ev.iter().any(|e| added(e, "192.0.2.50")));
    let Some(AddrEvent::Added(i)) = ev.iter().find(|e| added(e, "192.0.2.50")) else { panic!("{ev:?}") };
    assert_eq!((i.iface.as_str(), i.prefix, i.label.as_deref()), ("hv0", 24, Some("hv0:7")));

    ns.ip("addr del 192.0.2.50/24 dev hv0").expect("del");
    ns.ip("-6 addr add 2001:db8:77::50/64 dev hv0 nodad").expect("add v6");
    ns.ip("-6 addr del 2001:db8:77::50/64 dev hv0").expect("del v6");
    let removed = |e: &AddrEvent, a: &str| matches!(e, AddrEvent::Removed(i) if i.addr == ip(a));
    let (w, ev) = watch_until(&ns, w, |ev| {
        ev.iter().any(|e| removed(e, "192.0.2.50")) && ev.iter().any(|e| removed(e, "2001:db8:77::50"))
    });
    for a in ["192.0.2.50", "2001:db8:77::50"] {
        let Some(AddrEvent::Removed(i)) = ev.iter().find(|e| removed(e, a)) else { panic!("{a}: {ev:?}") };
        assert_eq!(
            (i.iface.as_str(), i.ifindex),
            ("hv0", ns.run(|| nix::net::if_::if_nametoindex("hv0").expect("idx")))
        );
    }
    assert!(!ev.iter().any(|e| matches!(e, AddrEvent::Lost { .. })), "{ev:?}");

    // Deleting the interface removes its addresses; the name is still reported.
    ns.ip("addr add 198.51.100.60/24 dev hv0").expect("add");
    ns.ip("link del hv0").expect("del link");
    let (_w, ev) = watch_until(&ns, w, |ev| ev.iter().any(|e| removed(e, "198.51.100.60")));
    let Some(AddrEvent::Removed(i)) = ev.iter().find(|e| removed(e, "198.51.100.60")) else {
        panic!("{ev:?}")
    };
    assert_eq!(i.iface, "hv0", "from the label once the interface is gone");
}

/// A request the kernel refuses, sent as is: the error carries the errno and the text.
#[test]
fn vip_kernel_error_text() {
    let Some(ns) = setup("vip_kernel_error_text") else { return };
    let e = ns.run(|| {
        let mut s = nl::Socket::request().expect("socket");
        let req =
            nl::Request::new(nl::RTM_NEWADDR, nl::NLM_F_CREATE, &nl::ifaddrmsg(nl::AF_INET, 24, 0, 0, 9999))
                .attr(nl::IFA_LOCAL, &[192, 0, 2, 5]);
        s.ack(req).expect_err("no such device").context("add")
    });
    // The kernel's extended-ack text, when this kernel gives one, follows the errno.
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    if let VipError::Os { detail: Some(d), .. } = &e {
        assert_eq!(e.to_string(), format!("add: {} ({d})", std::io::Error::from_raw_os_error(libc::ENODEV)));
    }
}
