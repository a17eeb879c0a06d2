//! Black-box behaviour of every scheduler over many connections: distributions, stability of
//! the hashing schedulers, Maglev's minimal disruption, and the locality schedulers' overload
//! and expiry rules with explicit time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use halo_lb::scheduler::{
    by_name, Conn, Dest, DestinationHash, Lblc, Lblcr, Maglev, Scheduler, SourceHash, MAGLEV_TABLE_SIZE,
    SCHEDULERS,
};

const VIP: ([u8; 4], u16) = ([192, 168, 6, 240], 80);

fn real(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 168, 16, 10 + i as u8], 80))
}

fn dests(weights: &[u32]) -> Vec<Dest> {
    weights.iter().enumerate().map(|(i, &w)| Dest::new(i, real(i), w)).collect()
}

/// Client number `n`, spread over many /24s and ports.
fn client(n: u32) -> SocketAddr {
    let ip = 0x0A00_0000u32 | (n.wrapping_mul(2_654_435_761) >> 8);
    SocketAddr::new(IpAddr::from(ip.to_be_bytes()), 1024 + (n % 60000) as u16)
}

fn conn(n: u32, now_ms: u64) -> Conn {
    Conn::new(client(n), SocketAddr::from(VIP), now_ms)
}

fn to_origin(origin: [u8; 4], now_ms: u64) -> Conn {
    Conn::new(SocketAddr::from(([10, 7, 7, 7], 5555)), SocketAddr::from((origin, 80)), now_ms)
}

fn counts(picks: impl IntoIterator<Item = usize>) -> HashMap<usize, usize> {
    let mut c = HashMap::new();
    for p in picks {
        *c.entry(p).or_insert(0) += 1;
    }
    c
}

/// Schedules `n` connections, counting each choice as a new active connection, as a director
/// sees it while connections stay open.
fn load(s: &mut dyn Scheduler, d: &mut [Dest], n: u32) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let id = s.schedule(d, &conn(i, 0)).expect("a destination");
            d[id].active += 1;
            id
        })
        .collect()
}

#[test]
fn rr_rotates_equally() {
    let mut rr = by_name("rr", &[]).expect("rr");
    let d = dests(&[1, 7, 3, 1, 2]);
    let picks: Vec<usize> = (0..1000).map(|i| rr.schedule(&d, &conn(i, 0)).expect("dest")).collect();
    for (i, p) in picks.iter().enumerate() {
        assert_eq!(*p, i % 5, "rr ignores weights and rotates in list order");
    }
}

#[test]
fn wrr_is_exactly_proportional_over_full_cycles() {
    for weights in [&[4, 3, 2][..], &[5, 1], &[1, 1, 1], &[100, 50, 25, 0], &[3, 6, 9], &[7]] {
        let mut wrr = by_name("wrr", &[]).expect("wrr");
        let d = dests(weights);
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        let cycle: u32 = weights.iter().map(|w| w / g).sum();
        let picks: Vec<usize> =
            (0..cycle * 7).map(|i| wrr.schedule(&d, &conn(i, 0)).expect("dest")).collect();
        let c = counts(picks);
        for (id, &w) in weights.iter().enumerate() {
            assert_eq!(c.get(&id).copied().unwrap_or(0) as u32, 7 * w / g, "weights {weights:?}, dest {id}");
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[test]
fn wrr_interleaving_order_is_the_kernels() {
    let mut wrr = by_name("wrr", &[]).expect("wrr");
    let d = dests(&[4, 3, 2]);
    let order: String =
        (0..9).map(|i| (b'A' + wrr.schedule(&d, &conn(i, 0)).expect("dest") as u8) as char).collect();
    assert_eq!(order, "AABABCABC");
    // 5:1 puts the light server last in each cycle.
    let mut wrr = by_name("wrr", &[]).expect("wrr");
    let d = dests(&[5, 1]);
    let order: String =
        (0..6).map(|i| (b'A' + wrr.schedule(&d, &conn(i, 0)).expect("dest") as u8) as char).collect();
    assert_eq!(order, "AAAAAB");
}

#[test]
fn wrr_reweighting_keeps_going() {
    let mut wrr = by_name("wrr", &[]).expect("wrr");
    let mut d = dests(&[4, 3, 2]);
    for i in 0..4 {
        wrr.schedule(&d, &conn(i, 0));
    }
    d[0].weight = 0; // quiesce A mid-cycle
    let c = counts((0..500).map(|i| wrr.schedule(&d, &conn(i, 0)).expect("dest")));
    assert_eq!(c.get(&0), None);
    assert_eq!(c[&1] + c[&2], 500);
    assert!(c[&1].abs_diff(300) <= 3 && c[&2].abs_diff(200) <= 3, "{c:?}");
}

#[test]
fn least_connection_family_fills_servers_by_their_formula() {
    // wlc: active*256/weight balanced, so active counts end proportional to the weights.
    let mut d = dests(&[1, 2, 3]);
    load(by_name("wlc", &[]).expect("wlc").as_mut(), &mut d, 600);
    assert_eq!([d[0].active, d[1].active, d[2].active], [100, 200, 300]);

    // sed: (active+1)/weight, same fixed point.
    let mut d = dests(&[1, 2, 3]);
    load(by_name("sed", &[]).expect("sed").as_mut(), &mut d, 600);
    assert_eq!([d[0].active, d[1].active, d[2].active], [100, 200, 300]);

    // lc ignores weights: equal counts.
    let mut d = dests(&[1, 2, 3]);
    load(by_name("lc", &[]).expect("lc").as_mut(), &mut d, 600);
    assert_eq!([d[0].active, d[1].active, d[2].active], [200, 200, 200]);

    // nq: the first three connections go to the three idle servers, one each, in list order.
    let mut d = dests(&[1, 2, 3]);
    let first = load(by_name("nq", &[]).expect("nq").as_mut(), &mut d, 3);
    assert_eq!(first, [0, 1, 2]);
}

#[test]
fn wlc_and_sed_differ_as_documented() {
    // A: weight 1, idle; B: weight 10, 5 active. wlc: 0/1 vs 1280/10 -> A.
    // sed: (0+1)/1 = 1 vs (5+1)/10 = 0.6 -> B.
    let mut d = dests(&[1, 10]);
    d[1].active = 5;
    assert_eq!(by_name("wlc", &[]).expect("wlc").schedule(&d, &conn(0, 0)), Some(0));
    assert_eq!(by_name("sed", &[]).expect("sed").schedule(&d, &conn(0, 0)), Some(1));
    // nq takes the idle one whatever the weights.
    assert_eq!(by_name("nq", &[]).expect("nq").schedule(&d, &conn(0, 0)), Some(0));
    // wlc counts inactive connections, sed does not.
    let mut d = dests(&[1, 1]);
    d[0].inactive = 10;
    d[1].active = 0;
    d[1].inactive = 0;
    assert_eq!(by_name("wlc", &[]).expect("wlc").schedule(&d, &conn(0, 0)), Some(1));
    assert_eq!(by_name("sed", &[]).expect("sed").schedule(&d, &conn(0, 0)), Some(0));
}

#[test]
fn quiescent_and_overloaded_destinations_are_never_picked() {
    for &name in SCHEDULERS {
        for flags in [&[][..], &["flag-1"], &["flag-1", "flag-2"]] {
            let mut s = by_name(name, flags).expect("known");
            let mut d = dests(&[3, 0, 2, 5, 1]);
            d[3].overloaded = true;
            for i in 0..3000 {
                let mut c = conn(i, u64::from(i) * 1000);
                c.dst = SocketAddr::from(([93, 184, (i % 7) as u8, (i % 251) as u8], 80));
                if let Some(id) = s.schedule(&d, &c) {
                    assert!(id != 1 && id != 3, "{name} {flags:?} picked {id}");
                    d[id].active = (d[id].active + 1) % 4;
                }
            }
        }
    }
}

#[test]
fn fo_fails_over_by_weight() {
    let mut fo = by_name("fo", &[]).expect("fo");
    let mut d = dests(&[10, 20, 15]);
    let all = counts((0..100).map(|i| fo.schedule(&d, &conn(i, 0)).expect("dest")));
    assert_eq!(all[&1], 100, "all traffic to the heaviest");
    d[1].weight = 0;
    assert_eq!(fo.schedule(&d, &conn(0, 0)), Some(2));
    d[2].overloaded = true;
    assert_eq!(fo.schedule(&d, &conn(0, 0)), Some(0));
}

#[test]
fn ovf_fills_the_heaviest_then_overflows() {
    let mut ovf = by_name("ovf", &[]).expect("ovf");
    let mut d = dests(&[2, 4, 3]);
    let picks = load(ovf.as_mut(), &mut d, 12);
    // B takes active 0..=4 (5 connections: it overflows once active > weight), then C 4, then A 3.
    assert_eq!(picks, [1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0]);
    assert_eq!(ovf.schedule(&d, &conn(99, 0)), None, "every server is past its weight");
}

#[test]
fn sh_is_stable_per_client_and_spreads_across_clients() {
    let d = dests(&[1, 1, 1, 1]);
    let mut sh = SourceHash::new(false, false);
    let mut first: HashMap<IpAddr, usize> = HashMap::new();
    for n in 0..4000 {
        let c = conn(n, 0);
        let id = sh.schedule(&d, &c).expect("dest");
        assert_eq!(*first.entry(c.src.ip()).or_insert(id), id);
        // Another port of the same client: same server without sh-port.
        let mut other = c;
        other.src.set_port(c.src.port().wrapping_add(17));
        assert_eq!(sh.schedule(&d, &other), Some(id));
    }
    let spread = counts(first.values().copied());
    for id in 0..4 {
        let share = spread[&id] as f64 / first.len() as f64;
        assert!((0.15..0.35).contains(&share), "sh share of {id}: {share}");
    }
}

#[test]
fn sh_port_makes_the_port_part_of_the_key() {
    let d = dests(&[1, 1, 1, 1]);
    let mut sh = SourceHash::new(false, true);
    let base = conn(1, 0);
    let servers: std::collections::HashSet<usize> = (0..64u16)
        .map(|p| {
            let mut c = base;
            c.src.set_port(1000 + p);
            sh.schedule(&d, &c).expect("dest")
        })
        .collect();
    assert!(servers.len() > 1, "with sh-port one client's ports spread over servers");
    let again = sh.schedule(&d, &base);
    assert_eq!(sh.schedule(&d, &base), again, "stable for the same address and port");
}

#[test]
fn sh_weights_shape_the_table() {
    let d = dests(&[3, 1]);
    let mut sh = SourceHash::new(false, false);
    let c = counts((0..20000).map(|n| sh.schedule(&d, &conn(n, 0)).expect("dest")));
    let share = c[&0] as f64 / 20000.0;
    assert!((0.65..0.85).contains(&share), "weight 3 of 4: {share}");
}

#[test]
fn sh_fallback_moves_only_the_clients_of_a_down_server() {
    let mut d = dests(&[1, 1, 1, 1]);
    let mut sh = SourceHash::new(true, false);
    let before: Vec<usize> = (0..2000).map(|n| sh.schedule(&d, &conn(n, 0)).expect("dest")).collect();
    d[2].overloaded = true; // flags do not refill the table
    let after: Vec<usize> = (0..2000).map(|n| sh.schedule(&d, &conn(n, 0)).expect("dest")).collect();
    for (b, a) in before.iter().zip(&after) {
        if *b != 2 {
            assert_eq!(a, b);
        } else {
            assert_ne!(*a, 2);
        }
    }
}

#[test]
fn dh_is_stable_per_origin_and_spreads_across_origins() {
    let d = dests(&[1, 1, 1]);
    let mut dh = DestinationHash::new();
    let mut seen = HashMap::new();
    for n in 0..3000u32 {
        let origin = (0x5DB8_0000u32 | n.wrapping_mul(40503)).to_be_bytes();
        let id = dh.schedule(&d, &to_origin(origin, 0)).expect("dest");
        assert_eq!(dh.schedule(&d, &to_origin(origin, 99)), Some(id));
        seen.insert(origin, id);
    }
    let c = counts(seen.values().copied());
    assert_eq!(c.len(), 3);
    assert!(c.values().all(|&v| v > 600), "{c:?}");
    // A weight change does not refill the dh table.
    let mut d2 = d.clone();
    d2[0].weight = 9;
    for (origin, id) in seen.iter().take(200) {
        assert_eq!(dh.schedule(&d2, &to_origin(*origin, 0)), Some(*id));
    }
}

fn mh_assign(mh: &mut Maglev, d: &[Dest], clients: u32) -> Vec<Option<usize>> {
    (0..clients).map(|n| mh.schedule(d, &conn(n, 0))).collect()
}

#[test]
fn mh_table_is_deterministic_and_full() {
    let d = dests(&[1, 1, 1, 1, 1]);
    let t1 = Maglev::new(false, false).table(&d);
    let t2 = Maglev::new(true, true).table(&d);
    assert_eq!(t1.len(), MAGLEV_TABLE_SIZE);
    assert_eq!(t1, t2);
    assert!(t1.iter().all(Option::is_some));
    let c = counts(t1.iter().flatten().copied());
    for id in 0..5 {
        let share = c[&id] as f64 / MAGLEV_TABLE_SIZE as f64;
        assert!((0.17..0.23).contains(&share), "slots of {id}: {share}");
    }
}

#[test]
fn mh_removing_one_of_n_moves_about_one_nth() {
    let n = 10;
    let clients = 20_000;
    let full = dests(&vec![1; n]);
    let mut mh = Maglev::new(false, false);
    let before = mh_assign(&mut mh, &full, clients);
    for removed in [0, 4, 9] {
        let fewer: Vec<Dest> = full.iter().copied().filter(|d| d.id != removed).collect();
        let after = mh_assign(&mut mh, &fewer, clients);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let fraction = moved as f64 / f64::from(clients);
        assert!(fraction <= 1.5 / n as f64 + 0.02, "removing {removed} moved {fraction}");
        // Everyone who was on the removed server moved; few others did.
        assert!(after.iter().all(|a| *a != Some(removed)));
        // Adding it back restores every assignment.
        assert_eq!(mh_assign(&mut mh, &full, clients), before);
    }
}

#[test]
fn mh_quiesced_server_without_fallback_refuses_its_clients_only() {
    let mut d = dests(&[1, 1, 1, 1]);
    let mut mh = Maglev::new(false, false);
    let mut mhf = Maglev::new(true, false);
    let before = mh_assign(&mut mh, &d, 4000);
    assert_eq!(mh_assign(&mut mhf, &d, 4000), before, "the flags do not change the table");
    d[1].weight = 0;
    let after = mh_assign(&mut mh, &d, 4000);
    for (b, a) in before.iter().zip(&after) {
        if *b == Some(1) {
            assert_eq!(*a, None);
        } else {
            assert_eq!(a, b);
        }
    }
    // With mh-fallback they land elsewhere, and the others still do not move.
    let fallback = mh_assign(&mut mhf, &d, 4000);
    for (b, f) in before.iter().zip(&fallback) {
        if *b == Some(1) {
            assert!(matches!(f, Some(x) if *x != 1));
        } else {
            assert_eq!(f, b);
        }
    }
    // Restoring the weight restores the assignment (the table never changed).
    d[1].weight = 1;
    assert_eq!(mh_assign(&mut mh, &d, 4000), before);
}

#[test]
fn mh_port_spreads_one_client() {
    let d = dests(&[1, 1, 1, 1]);
    let mut with_port = Maglev::new(false, true);
    let mut without = Maglev::new(false, false);
    let base = conn(3, 0);
    let ports = |mh: &mut Maglev| -> std::collections::HashSet<Option<usize>> {
        (0..64u16)
            .map(|p| {
                let mut c = base;
                c.src.set_port(2000 + p);
                mh.schedule(&d, &c)
            })
            .collect()
    };
    assert!(ports(&mut with_port).len() > 1);
    assert_eq!(ports(&mut without).len(), 1);
}

#[test]
fn mh_weights_shape_the_table() {
    let d = dests(&[3, 1]);
    let mut mh = Maglev::new(false, false);
    let c = counts(mh.table(&d).into_iter().flatten());
    let share = c[&0] as f64 / MAGLEV_TABLE_SIZE as f64;
    assert!((0.70..0.80).contains(&share), "weight 3 of 4: {share}");
    // Huge weights are scaled, not walked.
    let d = dests(&[2_000_000_000, 1_000_000_000]);
    let c = counts(mh.table(&d).into_iter().flatten());
    let share = c[&0] as f64 / MAGLEV_TABLE_SIZE as f64;
    assert!((0.6..0.73).contains(&share), "2:1: {share}");
}

#[test]
fn lblc_keeps_locality_until_overload_and_forgets_after_expiry() {
    let mut lblc = Lblc::new().with_expiration_ms(60_000);
    let mut d = dests(&[4, 4, 4]);
    let origin = [93, 184, 216, 34];
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 0)), Some(0));
    // Other servers become less loaded; locality holds while server 0 is within its weight.
    d[0].active = 4;
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 1_000)), Some(0));
    // Another origin is scheduled on its own (wlc: server 1).
    assert_eq!(lblc.schedule(&d, &to_origin([1, 2, 3, 4], 1_000)), Some(1));
    assert_eq!(lblc.len(), 2);
    // Over its weight while another is below half of its own: move, and the entry follows.
    d[0].active = 5;
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 2_000)), Some(1));
    d[0].active = 0;
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 3_000)), Some(1));
    // Idle for the expiration time: forgotten, scheduled afresh (wlc: server 0, idle now).
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 3_000 + 59_999)), Some(1));
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 62_999 + 60_000)), Some(0));
    // expire() collects idle entries without a connection.
    lblc.expire(10_000_000);
    assert!(lblc.is_empty());
}

#[test]
fn lblc_quiesced_server_loses_its_origins() {
    let mut lblc = Lblc::new();
    let mut d = dests(&[1, 1]);
    let origin = [8, 8, 8, 8];
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 0)), Some(0));
    d[0].weight = 0;
    assert_eq!(lblc.schedule(&d, &to_origin(origin, 1)), Some(1));
}

#[test]
fn lblc_table_is_capped() {
    let mut lblc = Lblc::new().with_max_entries(100);
    let d = dests(&[1, 1]);
    for n in 0..1000u32 {
        assert!(lblc.schedule(&d, &to_origin(n.to_be_bytes(), u64::from(n))).is_some());
    }
    assert_eq!(lblc.len(), 100);
    // Once entries have been idle for the entry timeout (6 min), the full table makes room.
    assert!(lblc.schedule(&d, &to_origin([9, 9, 9, 9], 400_000)).is_some());
    assert!(lblc.len() <= 100);
    assert!(lblc.len() < 10, "idle entries collected: {}", lblc.len());
}

#[test]
fn lblcr_set_grows_when_overloaded_and_shrinks_after_expiry() {
    let exp = 10_000;
    let mut lblcr = Lblcr::new().with_expiration_ms(exp);
    let mut d = dests(&[2, 2, 2]);
    let origin = [93, 184, 216, 34];
    let key: IpAddr = IpAddr::from(origin);

    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 0)), Some(0));
    assert_eq!(lblcr.server_set(key), Some(&[0][..]));

    // Server 0 past its weight while others are idle: replicate to the wlc choice.
    d[0].active = 3;
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 100)), Some(1));
    assert_eq!(lblcr.server_set(key), Some(&[1, 0][..]));

    // The least loaded member serves; no growth while it is fine.
    d[1].active = 1;
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 200)), Some(1));
    assert_eq!(lblcr.server_set(key), Some(&[1, 0][..]));

    // Every member overloaded (threshold flag): the set grows again.
    d[0].overloaded = true;
    d[1].overloaded = true;
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 300)), Some(2));
    assert_eq!(lblcr.server_set(key), Some(&[2, 1, 0][..]));
    d[0].overloaded = false;
    d[1].overloaded = false;

    // Keep using it (so the entry stays alive) without changing the set...
    d[2].active = 2;
    for t in [3_000, 6_000, 9_000, 10_300] {
        assert_eq!(lblcr.schedule(&d, &to_origin(origin, t)), Some(1));
        assert_eq!(lblcr.server_set(key).map(<[usize]>::len), Some(3));
    }
    // ...until the set has gone unchanged for longer than the expiration: the busiest member
    // (server 0, 3 active of weight 2) leaves.
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 10_301)), Some(1));
    assert_eq!(lblcr.server_set(key), Some(&[2, 1][..]));
    // One more expiration later it sheds another, never the last one.
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 18_000)), Some(1));
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 20_302)), Some(1));
    assert_eq!(lblcr.server_set(key), Some(&[1][..]));
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 30_303)), Some(1));
    assert_eq!(lblcr.server_set(key), Some(&[1][..]));

    // Idle for the expiration time: the whole entry is forgotten.
    d[1].active = 3;
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 30_303 + exp)), Some(2));
    assert_eq!(lblcr.server_set(key), Some(&[2][..]));
}

#[test]
fn lblcr_forgets_removed_servers() {
    let mut lblcr = Lblcr::new();
    let mut d = dests(&[1, 1]);
    let origin = [4, 4, 4, 4];
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 0)), Some(0));
    d.remove(0);
    assert_eq!(lblcr.schedule(&d, &to_origin(origin, 1)), Some(1));
    assert_eq!(lblcr.server_set(IpAddr::from(origin)), Some(&[1][..]));
}
