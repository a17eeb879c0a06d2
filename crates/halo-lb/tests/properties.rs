//! Properties every scheduler keeps, whatever the destinations and the traffic: never a
//! quiescent or overloaded destination, never an id that is not in the list, and an answer
//! whenever the scheduler's own rule allows one.

use std::net::{IpAddr, SocketAddr};

use halo_lb::scheduler::{by_name, Conn, Dest, Netmask, Persistence, RoundRobin, SCHEDULERS};
use proptest::prelude::*;

/// Schedulers that always find a destination when one is eligible; the others (`sh`, `dh`,
/// `mh` without fallback: the hashed destination or nothing; `ovf`: only within weight) are
/// checked for safety and for their own rule. `sh` with fallback walks all 256 buckets, so it
/// finds every destination that holds one: all of them unless the weights (bucket counts) add
/// up to more than the table.
fn total(name: &str, flags: &[&str], d: &[Dest]) -> bool {
    match name {
        "sh" => {
            flags.contains(&"flag-1")
                && d.iter().map(|x| u64::from(x.weight.clamp(1, 256))).sum::<u64>() <= 256
        }
        "mh" => flags.contains(&"flag-1"),
        "dh" | "ovf" => false,
        _ => true,
    }
}

fn arb_dest() -> impl Strategy<Value = (u32, u32, u32, bool)> {
    (
        prop_oneof![Just(0u32), 1u32..5, Just(u32::MAX), Just(2_147_483_647)],
        0u32..8,
        0u32..8,
        prop::bool::weighted(0.25),
    )
}

fn build(raw: &[(u32, u32, u32, bool)]) -> Vec<Dest> {
    raw.iter()
        .enumerate()
        .map(|(i, &(weight, active, inactive, overloaded))| Dest {
            id: 100 + i,
            addr: SocketAddr::from(([10, 20, 0, i as u8], 8080)),
            weight,
            active,
            inactive,
            overloaded,
        })
        .collect()
}

fn arb_conn() -> impl Strategy<Value = Conn> {
    (any::<[u8; 4]>(), any::<u16>(), any::<[u8; 16]>(), any::<bool>(), 0u64..10_000_000, any::<[u8; 4]>())
        .prop_map(|(v4, port, v6, six, now_ms, dst)| {
            let src = if six { IpAddr::from(v6) } else { IpAddr::from(v4) };
            Conn::new(SocketAddr::new(src, port), SocketAddr::from((dst, 80)), now_ms)
        })
}

const FLAG_SETS: [&[&str]; 4] = [&[], &["flag-1"], &["flag-2"], &["flag-1", "flag-2"]];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn never_quiescent_or_overloaded_and_some_when_eligible(
        lists in prop::collection::vec(prop::collection::vec(arb_dest(), 0..8), 1..6),
        conns in prop::collection::vec(arb_conn(), 1..30),
    ) {
        for &name in SCHEDULERS {
            for flags in FLAG_SETS {
                let mut s = by_name(name, flags).expect("known scheduler");
                // The destination list changes under the scheduler between connections.
                for (k, c) in conns.iter().enumerate() {
                    let d = build(&lists[k % lists.len()]);
                    let got = s.schedule(&d, c);
                    if let Some(id) = got {
                        let dest = d.iter().find(|x| x.id == id);
                        prop_assert!(dest.is_some(), "{} {:?} returned unknown id {}", name, flags, id);
                        let dest = dest.expect("checked");
                        prop_assert!(dest.weight > 0, "{} {:?} picked quiescent {:?}", name, flags, dest);
                        prop_assert!(!dest.overloaded, "{} {:?} picked overloaded {:?}", name, flags, dest);
                        if name == "ovf" {
                            prop_assert!(dest.active <= dest.weight);
                        }
                    }
                    let eligible = d.iter().any(Dest::available);
                    if total(name, flags, &d) {
                        prop_assert_eq!(got.is_some(), eligible, "{} {:?} on {:?}", name, flags, d);
                    }
                    if name == "ovf" {
                        let room = d.iter().any(|x| x.available() && x.active <= x.weight);
                        prop_assert_eq!(got.is_some(), room);
                    }
                    if !eligible {
                        prop_assert_eq!(got, None);
                    }
                }
            }
        }
    }

    #[test]
    fn deterministic_for_the_same_inputs(
        raw in prop::collection::vec(arb_dest(), 0..8),
        conns in prop::collection::vec(arb_conn(), 1..20),
    ) {
        let d = build(&raw);
        for &name in SCHEDULERS {
            let (mut a, mut b) = (by_name(name, &["flag-1"]).expect("known"), by_name(name, &["flag-1"]).expect("known"));
            for c in &conns {
                prop_assert_eq!(a.schedule(&d, c), b.schedule(&d, c), "{}", name);
            }
        }
    }

    #[test]
    fn persistence_never_gives_a_new_connection_to_a_quiescent_or_missing_server(
        lists in prop::collection::vec(prop::collection::vec(arb_dest(), 0..6), 1..5),
        conns in prop::collection::vec(arb_conn(), 1..40),
        prefix in 1u8..=32,
    ) {
        let mask = u32::MAX << (32 - u32::from(prefix));
        let mut p = Persistence::new(5_000, Netmask::v4(mask.to_be_bytes().into()));
        let mut rr = RoundRobin::new();
        let mut now = 0;
        for (k, c) in conns.iter().enumerate() {
            let d = build(&lists[k % lists.len()]);
            now += c.now_ms % 3_000;
            let c = Conn { now_ms: now, ..*c };
            if let Some(id) = p.schedule(&mut rr, &d, &c) {
                let dest = d.iter().find(|x| x.id == id);
                prop_assert!(dest.is_some_and(|x| x.weight > 0), "{:?} from {:?}", dest, d);
            } else {
                prop_assert!(!d.iter().any(Dest::available));
            }
        }
    }
}
