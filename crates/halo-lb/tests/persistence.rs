//! Persistence (`persistent` + `netmask`) in front of a scheduler, with explicit time.

use std::net::{IpAddr, SocketAddr};

use halo_lb::scheduler::{
    by_name, Conn, Dest, Netmask, Persistence, RoundRobin, DEFAULT_PERSISTENT_TIMEOUT_MS,
};

fn dests(n: usize) -> Vec<Dest> {
    (0..n).map(|i| Dest::new(i, SocketAddr::from(([192, 168, 16, 10 + i as u8], 80)), 1)).collect()
}

fn from(ip: &str, port: u16, now_ms: u64) -> Conn {
    let ip: IpAddr = ip.parse().expect("test address");
    Conn::new(SocketAddr::new(ip, port), SocketAddr::from(([192, 168, 6, 240], 443)), now_ms)
}

fn p24(timeout_ms: u64) -> Persistence {
    Persistence::new(timeout_ms, Netmask::parse("255.255.255.0").expect("mask"))
}

#[test]
fn same_masked_client_keeps_its_server_until_the_timeout() {
    let d = dests(3);
    let mut rr = RoundRobin::new();
    let mut p = p24(600_000);
    let first = p.schedule(&mut rr, &d, &from("10.1.1.50", 40000, 0));
    assert_eq!(first, Some(0));
    // Same /24, other hosts and ports, while rr alone would rotate: same server.
    for (i, host) in ["10.1.1.50", "10.1.1.99", "10.1.1.1", "10.1.1.254"].iter().enumerate() {
        let t = 1_000 * i as u64;
        assert_eq!(p.schedule(&mut rr, &d, &from(host, 40001 + i as u16, t)), first, "{host}");
    }
    // Another /24 is scheduled on its own: rr gives the next server.
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.2.50", 40000, 5_000)), Some(1));
    assert_eq!(p.len(), 2);
}

#[test]
fn each_use_extends_the_template_and_expiry_reschedules() {
    let d = dests(3);
    let mut rr = RoundRobin::new();
    let mut p = p24(300_000);
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.50", 1, 0)), Some(0));
    // Used at 200 s: lives until 500 s.
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.51", 2, 200_000)), Some(0));
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.52", 3, 499_999)), Some(0));
    assert_eq!(p.lookup("10.1.1.7".parse().expect("ip"), 799_998), Some(0));
    // Expired exactly at last use + timeout: scheduled afresh (rr moves on).
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.53", 4, 799_999)), Some(1));
    assert_eq!(p.lookup("10.1.1.7".parse().expect("ip"), 800_000), Some(1));
}

#[test]
fn expire_drops_old_templates() {
    let d = dests(2);
    let mut rr = RoundRobin::new();
    let mut p = p24(1_000);
    for i in 0..50u8 {
        p.schedule(&mut rr, &d, &from(&format!("10.0.{i}.1"), 1, u64::from(i)));
    }
    assert_eq!(p.len(), 50);
    p.expire(1_024);
    assert_eq!(p.len(), 25);
    p.expire(5_000);
    assert!(p.is_empty());
}

#[test]
fn unavailable_destination_is_rescheduled() {
    let mut d = dests(3);
    let mut rr = RoundRobin::new();
    let mut p = p24(DEFAULT_PERSISTENT_TIMEOUT_MS);
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.50", 1, 0)), Some(0));

    // Removed from the service: rescheduled, and the new choice sticks.
    let without_0: Vec<Dest> = d.iter().copied().filter(|x| x.id != 0).collect();
    let moved = p.schedule(&mut rr, &without_0, &from("10.1.1.50", 2, 10));
    assert!(matches!(moved, Some(1 | 2)));
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.60", 3, 20)), moved);

    // Quiesced (failed health check): rescheduled by default.
    let m = moved.expect("moved");
    d[m].weight = 0;
    let again = p.schedule(&mut rr, &d, &from("10.1.1.50", 4, 30));
    assert!(again.is_some() && again != moved);

    // Overloaded: persistent clients stay, as in the kernel.
    let a = again.expect("again");
    d[a].overloaded = true;
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.50", 5, 40)), again);
}

#[test]
fn keep_quiescent_reproduces_the_kernel_default() {
    let mut d = dests(2);
    let mut wlc = by_name("wlc", &[]).expect("wlc");
    let mut p = Persistence::new(60_000, Netmask::HOST).keep_quiescent(true);
    assert_eq!(p.schedule(wlc.as_mut(), &d, &from("10.1.1.50", 1, 0)), Some(0));
    d[0].weight = 0;
    assert_eq!(p.schedule(wlc.as_mut(), &d, &from("10.1.1.50", 2, 1)), Some(0));
    // A new client is never sent to the quiescent server.
    assert_eq!(p.schedule(wlc.as_mut(), &d, &from("10.1.1.51", 1, 2)), Some(1));
}

#[test]
fn host_netmask_separates_neighbours() {
    let d = dests(3);
    let mut rr = RoundRobin::new();
    let mut p = Persistence::new(60_000, Netmask::HOST);
    let a = p.schedule(&mut rr, &d, &from("10.1.1.50", 1, 0));
    let b = p.schedule(&mut rr, &d, &from("10.1.1.51", 1, 0));
    assert_ne!(a, b);
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.50", 9, 1)), a);
}

#[test]
fn ipv6_clients_group_by_prefix() {
    let d = dests(4);
    let mut rr = RoundRobin::new();
    let mut p = Persistence::new(60_000, Netmask::v6(64).expect("/64"));
    let a = p.schedule(&mut rr, &d, &from("2001:db8:1:2::10", 1, 0));
    assert_eq!(p.schedule(&mut rr, &d, &from("2001:db8:1:2:ffff::1", 1, 1)), a);
    assert_ne!(p.schedule(&mut rr, &d, &from("2001:db8:1:3::10", 1, 2)), a);
}

#[test]
fn no_destination_leaves_no_template() {
    let d = dests(2).into_iter().map(|mut x| {
        x.weight = 0;
        x
    });
    let d: Vec<Dest> = d.collect();
    let mut rr = RoundRobin::new();
    let mut p = p24(60_000);
    assert_eq!(p.schedule(&mut rr, &d, &from("10.1.1.50", 1, 0)), None);
    assert!(p.is_empty());
}

#[test]
fn template_table_is_capped() {
    let d = dests(2);
    let mut rr = RoundRobin::new();
    let mut p = Persistence::new(60_000, Netmask::HOST).with_max_entries(10);
    for i in 0..100u8 {
        assert!(p.schedule(&mut rr, &d, &from(&format!("10.9.0.{i}"), 1, 0)).is_some());
    }
    assert_eq!(p.len(), 10);
    // Once they expire there is room again.
    p.schedule(&mut rr, &d, &from("10.9.1.1", 1, 60_000));
    assert_eq!(p.len(), 1);
}
