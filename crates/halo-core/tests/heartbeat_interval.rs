//! The heartbeat interval histogram (`nodes[].heartbeat_interval`, `/metrics`'
//! `halo_heartbeat_interval_seconds`): two engines on a virtual clock, their messages through
//! the real wire codec, n2's heartbeats delivered to n1 on time, then held back once.
use halo_core::status::{IntervalHistogram, HEARTBEAT_BUCKETS_MS};
use halo_core::{Action, CoreConfig, Engine, Event, NodeState, Now};
use halo_wire::{AuthMethod, Keyring};

struct Pair {
    now: u64,
    engines: [Engine; 2],
    keyring: Keyring,
    /// (deliver at, to, bytes)
    queue: Vec<(u64, usize, Vec<u8>)>,
    /// While set, n2's messages to n1 are held until this time (a late heartbeat).
    hold_until: Option<u64>,
}

impl Pair {
    fn new() -> Pair {
        let names = ["n1", "n2"];
        let engines = [0usize, 1].map(|i| {
            let mut cfg = CoreConfig::new(names[i], &names, &["eth0"]);
            cfg.keepalive_ms = 100;
            cfg.warntime_ms = 500;
            cfg.deadtime_ms = 2000;
            cfg.initdead_ms = 3000;
            cfg.generation = 10 + i as u64;
            cfg.uuid = [i as u8 + 1; 16];
            cfg.seed = i as u64 + 3;
            Engine::new(cfg)
        });
        Pair {
            now: 0,
            engines,
            keyring: Keyring::new(1, vec![(1, AuthMethod::Sha1, b"histkey".to_vec())]),
            queue: Vec::new(),
            hold_until: None,
        }
    }

    fn apply(&mut self, from: usize, out: Vec<Action>) {
        for a in out {
            if let Action::Send(m) = a {
                let to = 1 - from;
                let at = match self.hold_until {
                    Some(h) if from == 1 => h,
                    _ => self.now + 1,
                };
                self.queue.push((at, to, halo_wire::encode(&m, &self.keyring)));
            }
        }
    }

    fn step(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 1;
            let now = Now::at(self.now);
            let (due, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.0 <= self.now);
            self.queue = rest;
            for (_, to, bytes) in due {
                let msg = halo_wire::decode(&bytes, &self.keyring).expect("packets verify");
                let mut out = Vec::new();
                self.engines[to].handle(now, Event::Message { link: 0, msg }, &mut out);
                self.apply(to, out);
            }
            for i in 0..2 {
                if self.engines[i].next_deadline() <= self.now {
                    let mut out = Vec::new();
                    self.engines[i].handle(now, Event::Tick, &mut out);
                    self.apply(i, out);
                }
            }
        }
    }

    /// n1's histogram of n2's heartbeat intervals.
    fn histogram(&self) -> IntervalHistogram {
        let st = self.engines[0].status(Now::at(self.now));
        let n2 = st.nodes.iter().find(|n| n.name == "n2").expect("n2 in n1's status");
        n2.heartbeat_interval.clone().expect("a peer has a histogram")
    }
}

fn bucket_of(ms: u64) -> usize {
    HEARTBEAT_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(HEARTBEAT_BUCKETS_MS.len())
}

#[test]
fn heartbeat_intervals_are_counted_per_peer_in_fixed_buckets() {
    let mut p = Pair::new();
    p.step(4000);
    let st = p.engines[0].status(Now::at(p.now));
    assert_eq!(st.nodes[1].state, NodeState::Active.name(), "{st:?}");
    // Ourselves: no histogram.
    assert_eq!(st.nodes[0].name, "n1");
    assert_eq!(st.nodes[0].heartbeat_interval, None);

    let steady = p.histogram();
    assert!(steady.count >= 10, "n1 counted only {} intervals of n2 in 4 s: {steady:?}", steady.count);
    assert_eq!(steady.counts.iter().sum::<u64>(), steady.count);
    // At keepalive 100 ms every interval is around 100 ms: nothing at 500 ms or above.
    let mean = steady.sum_ms / steady.count;
    assert!((50..=200).contains(&mean), "mean interval {mean} ms at keepalive 100 ms: {steady:?}");
    assert_eq!(steady.counts[bucket_of(501)..].iter().sum::<u64>(), 0, "{steady:?}");
    let cum = steady.cumulative();
    assert_eq!(cum.len(), HEARTBEAT_BUCKETS_MS.len());
    assert!(cum.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative counts never decrease: {cum:?}");
    assert_eq!(cum.last().unwrap().1, steady.count, "nothing above 30 s");

    // n2's heartbeats are held back for 1.2 s (later than warntime, within deadtime): one
    // interval of about 1.3 s, counted in the (1000, 1500] bucket.
    let held_from = p.now;
    p.hold_until = Some(held_from + 1200);
    p.step(1200);
    p.hold_until = None;
    p.step(500);
    let after = p.histogram();
    assert_eq!(after.counts[bucket_of(1300)] - steady.counts[bucket_of(1300)], 1, "{steady:?}\n{after:?}");
    assert!(after.count > steady.count + 1);
    assert!(after.sum_ms >= steady.sum_ms + 1000, "{steady:?}\n{after:?}");
    let st = p.engines[0].status(Now::at(p.now));
    assert_eq!(st.nodes[1].late_heartbeats, 1, "the held heartbeat is also a late one");
}

#[test]
fn observing_puts_each_interval_in_the_first_bucket_that_holds_it() {
    let mut h = IntervalHistogram::default();
    for ms in [0, 10, 11, 100, 2999, 3000, 30_000, 30_001, u64::MAX / 2] {
        h.observe(ms);
    }
    assert_eq!(h.count, 9);
    let cum = h.cumulative();
    let at = |le: u64| cum.iter().find(|(b, _)| *b == le).map(|(_, c)| *c).unwrap();
    assert_eq!(at(10), 2);
    assert_eq!(at(25), 3);
    assert_eq!(at(100), 4);
    assert_eq!(at(3000), 6);
    assert_eq!(at(30_000), 7);
    assert_eq!(h.counts[HEARTBEAT_BUCKETS_MS.len()], 2, "above the last bound: +Inf only");
    assert_eq!(h.sum_ms, 10 + 11 + 100 + 2999 + 3000 + 30_000 + 30_001 + u64::MAX / 2);
}
