//! When checks run: each real server once per `checkinterval`, at a stable phase of its own,
//! with a cap on the checks in flight — never every check of a service at the same instant.
//!
//! * **Phase.** Real server `i` is checked on its grid `anchor + phase_i + k × interval`,
//!   where `phase_i` ([`phase`]) is a hash of its address into `[0, interval)`: 10,000 real
//!   servers checked every second make ~10 checks per millisecond instead of a burst of
//!   10,000 at the tick, so few checks are in flight at any time (memory and CPU follow the
//!   checks in flight, not the number of real servers).
//! * **First check at once.** At start every real server is due at `anchor` (a real server is
//!   down until checked, so the first pass must be quick); the cap bounds that burst. After a
//!   check, the next one is the first grid point at least `interval / 2` after the check was
//!   due and not before it completed: in the steady state exactly one `interval` apart, the
//!   second check between `interval / 2` and `1.5 × interval` after the first.
//! * **No overlap.** A real server is never checked twice at once: its next check is
//!   scheduled when the current one completes. A check that overruns its interval (a
//!   `checktimeout` longer than `checkinterval`) is followed by the next grid point.
//! * **Ticks.** Checks due within one tick (`interval / 50`, at most 20 ms) start together:
//!   fewer wake-ups of the runtime, at the price of starting a check up to one tick late.
//! * **Cap.** A semaphore bounds the checks in flight ([`in_flight_cap`]); a check waits for a
//!   permit when the cap is reached and keeps its place on its grid.
//!
//! [`drive`] runs the loop for one virtual service: one task per check (the check itself), and
//! the scheduling in the caller's task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Fewest and most checks in flight [`in_flight_cap`] gives.
pub const MIN_IN_FLIGHT: usize = 32;
pub const MAX_IN_FLIGHT: usize = 1024;

/// The stable phase of `target` in `[0, interval)`: a hash of its address and port.
pub fn phase(target: SocketAddr, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a over the address and port...
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match target.ip() {
        IpAddr::V4(a) => a.octets().into_iter().for_each(&mut eat),
        IpAddr::V6(a) => a.octets().into_iter().for_each(&mut eat),
    }
    target.port().to_be_bytes().into_iter().for_each(&mut eat);
    // ...then splitmix64's finaliser, so that neighbouring ports land far apart.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let span = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(h) % span) as u64)
}

/// Checks in flight for `checks_per_s` checks a second that may each take up to `timeout`:
/// enough for every check to time out without falling behind, within
/// [`MIN_IN_FLIGHT`]..=[`MAX_IN_FLIGHT`]. Checks that answer take a few milliseconds, so the
/// steady state stays far below the cap; the cap bounds the first pass and the case where
/// many real servers stop answering at once.
pub fn in_flight_cap(checks_per_s: f64, timeout: Duration) -> usize {
    let need = (checks_per_s * timeout.as_secs_f64()).ceil();
    if need.is_finite() && need > 0.0 {
        (need as usize).clamp(MIN_IN_FLIGHT, MAX_IN_FLIGHT)
    } else {
        MIN_IN_FLIGHT
    }
}

/// The schedule of one virtual service's real servers. Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct Pacer {
    anchor: Instant,
    interval: Duration,
    phases: Vec<Duration>,
    /// Real servers not being checked, by when they are due.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Pacer {
    /// Every target due at `anchor` (the first check at once); later checks on its phase.
    pub fn new(anchor: Instant, interval: Duration, targets: &[SocketAddr]) -> Pacer {
        let interval = interval.max(Duration::from_millis(1));
        Pacer {
            anchor,
            interval,
            phases: targets.iter().map(|t| phase(*t, interval)).collect(),
            due: (0..targets.len()).map(|i| Reverse((anchor, i))).collect(),
        }
    }

    /// The pacer of a service after a reconfiguration: targets with `fresh[i]` (new real
    /// servers, or changed checks) are due at `now`; the others keep their grid (pass the
    /// `anchor` and `interval` of the pacer before) and are due at their first grid point
    /// at or after `now` — a real server the reconfiguration kept is not checked because of
    /// it, and its rhythm does not move.
    pub fn resume(
        anchor: Instant,
        interval: Duration,
        targets: &[SocketAddr],
        fresh: &[bool],
        now: Instant,
    ) -> Pacer {
        let mut p = Pacer::new(anchor, interval, targets);
        p.due = (0..targets.len())
            .map(|i| {
                let t = if fresh.get(i).copied().unwrap_or(true) { now } else { p.grid_at_or_after(i, now) };
                Reverse((t, i))
            })
            .collect();
        p
    }

    pub fn anchor(&self) -> Instant {
        self.anchor
    }

    pub fn len(&self) -> usize {
        self.phases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// When the next check is due (`None` while every target is being checked).
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((t, _))| *t)
    }

    /// When to start the next checks: [`Pacer::next_due`] rounded up to the pacer's tick
    /// (`interval / 50`, 1 to 20 ms), so that the checks due within one tick start together —
    /// one wake-up of the runtime for a handful of checks instead of one each, and their
    /// answers come back together too. A check starts at most one tick late; its phase does
    /// not move.
    pub fn next_wake(&self) -> Option<Instant> {
        let t = self.next_due()?;
        let tick = self.tick().as_nanos();
        let since = t.saturating_duration_since(self.anchor).as_nanos();
        let up = since.div_ceil(tick).saturating_mul(tick).min(u128::from(u64::MAX));
        Some(self.anchor + Duration::from_nanos(up as u64))
    }

    /// See [`Pacer::next_wake`].
    pub fn tick(&self) -> Duration {
        (self.interval / 50).clamp(Duration::from_millis(1), Duration::from_millis(20))
    }

    /// A target due at or before `now`, and when it was due; it is then being checked until
    /// [`Pacer::done`].
    pub fn pop_due(&mut self, now: Instant) -> Option<(usize, Instant)> {
        match self.due.peek() {
            Some(Reverse((t, _))) if *t <= now => self.due.pop().map(|Reverse((t, i))| (i, t)),
            _ => None,
        }
    }

    /// The check of `i` due at `slot` completed at `now`: schedules its next one.
    pub fn done(&mut self, i: usize, slot: Instant, now: Instant) {
        if i < self.phases.len() {
            let next = self.grid_at_or_after(i, (slot + self.interval / 2).max(now));
            self.due.push(Reverse((next, i)));
        }
    }

    /// The first point of `i`'s grid at or after `t`.
    fn grid_at_or_after(&self, i: usize, t: Instant) -> Instant {
        let first = self.anchor + self.phases[i];
        if t <= first {
            return first;
        }
        let step = self.interval.as_nanos();
        let k = (t - first).as_nanos().div_ceil(step);
        let offset = k.saturating_mul(step).min(u128::from(u64::MAX));
        first + Duration::from_nanos(offset as u64)
    }
}

/// Runs the checks of one virtual service forever (until the caller's task is dropped):
/// `check(i)` is the check of target `i` (its result recorded inside), spawned as one task
/// once a permit of `limit` is held; `first_pass` is called once every target has been
/// checked once. Call it inside a tokio runtime.
pub async fn drive<C, F>(mut pacer: Pacer, limit: Arc<Semaphore>, mut check: C, first_pass: impl FnOnce())
where
    C: FnMut(usize) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let n = pacer.len();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut checked = vec![false; n];
    let mut unchecked = n;
    let mut first_pass = Some(first_pass);
    if n == 0 {
        if let Some(f) = first_pass.take() {
            f();
        }
        std::future::pending::<()>().await;
    }
    let sleep = tokio::time::sleep_until(pacer.next_wake().unwrap_or_else(Instant::now));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            Some((i, slot)) = rx.recv() => {
                pacer.done(i, slot, Instant::now());
                if !std::mem::replace(&mut checked[i], true) {
                    unchecked -= 1;
                    if unchecked == 0 {
                        if let Some(f) = first_pass.take() {
                            f();
                        }
                    }
                }
            }
            () = &mut sleep, if pacer.next_due().is_some() => {
                while let Some((i, slot)) = pacer.pop_due(Instant::now()) {
                    let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                        // The semaphore is closed: no more checks.
                        std::future::pending::<()>().await;
                        return;
                    };
                    let work = check(i);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        work.await;
                        drop(permit);
                        let _ = tx.send((i, slot));
                    });
                }
            }
        }
        if let Some(t) = pacer.next_wake() {
            sleep.as_mut().reset(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|p| SocketAddr::from(([127, 0, 0, 1], 20000 + p))).collect()
    }

    #[test]
    fn phases_are_stable_and_spread() {
        let i = Duration::from_secs(1);
        let a = addrs(1000);
        assert_eq!(phase(a[7], i), phase(a[7], i));
        assert!(a.iter().all(|t| phase(*t, i) < i));
        // Ten buckets of 100 ms: none empty, none with more than twice its share.
        let mut buckets = [0u32; 10];
        for t in &a {
            buckets[(phase(*t, i).as_millis() / 100) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 50 && b < 200), "{buckets:?}");
    }

    #[test]
    fn resume_checks_fresh_targets_at_once_and_keeps_the_grid_of_the_others() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(2);
        let a = addrs(4);
        let now = t0 + Duration::from_millis(5300);
        let mut p = Pacer::resume(t0, iv, &a, &[false, true, false, true], now);
        let mut at_once = Vec::new();
        while let Some((i, _)) = p.pop_due(now) {
            at_once.push(i);
        }
        at_once.sort();
        assert_eq!(at_once, vec![1, 3]);
        // The kept ones are next on their own grid (t0 + phase + k × interval) after now.
        let mut later = Vec::new();
        while let Some(t) = p.next_due() {
            let (i, slot) = p.pop_due(t).expect("due");
            assert!(slot >= now && slot < now + iv, "within one interval");
            assert_eq!((slot - t0 - phase(a[i], iv)).as_nanos() % iv.as_nanos(), 0, "on its grid");
            later.push(i);
        }
        later.sort();
        assert_eq!(later, vec![0, 2]);
    }

    #[test]
    fn caps() {
        assert_eq!(in_flight_cap(2.0, Duration::from_secs(1)), MIN_IN_FLIGHT);
        assert_eq!(in_flight_cap(100.0, Duration::from_secs(3)), 300);
        assert_eq!(in_flight_cap(10_000.0, Duration::from_secs(5)), MAX_IN_FLIGHT);
        assert_eq!(in_flight_cap(f64::NAN, Duration::from_secs(5)), MIN_IN_FLIGHT);
    }

    #[test]
    fn first_at_once_then_once_per_interval_on_the_phase() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(2);
        let a = addrs(50);
        let mut p = Pacer::new(t0, iv, &a);
        let mut popped = Vec::new();
        while let Some((i, slot)) = p.pop_due(t0) {
            assert_eq!(slot, t0);
            popped.push(i);
        }
        assert_eq!(popped.len(), 50, "every target is checked at start");
        assert_eq!(p.next_due(), None, "all being checked");
        for &i in &popped {
            p.done(i, t0, t0 + Duration::from_millis(3));
        }
        // Follow every target for ten checks: always on its phase, one interval apart.
        let mut last = vec![t0; 50];
        let mut count = [0; 50];
        while count.iter().any(|&c| c < 10) {
            let t = p.next_due().unwrap();
            let (i, slot) = p.pop_due(t).unwrap();
            assert_eq!(slot, t);
            let gap = slot - last[i];
            if count[i] == 0 {
                assert!(gap >= iv / 2 && gap < iv * 3 / 2, "second check after {gap:?}");
            } else {
                assert_eq!(gap, iv);
            }
            assert_eq!((slot - t0).as_nanos() % iv.as_nanos(), phase(a[i], iv).as_nanos());
            last[i] = slot;
            count[i] += 1;
            p.done(i, slot, slot + Duration::from_millis(1));
        }
    }

    #[test]
    fn an_overrun_check_takes_the_next_grid_point() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(1);
        let a = addrs(1);
        let mut p = Pacer::new(t0, iv, &a);
        let (i, slot) = p.pop_due(t0).unwrap();
        // Checked, then the next check runs long: 2.5 intervals.
        p.done(i, slot, t0);
        let t1 = p.next_due().unwrap();
        let (i, slot) = p.pop_due(t1).unwrap();
        p.done(i, slot, t1 + iv * 5 / 2);
        let t2 = p.next_due().unwrap();
        assert_eq!(t2 - t1, iv * 3, "next grid point after it completed");
        assert!(p.pop_due(t2 - Duration::from_millis(1)).is_none());
    }

    #[test]
    fn wake_ups_on_ticks() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(1);
        let a = addrs(200);
        let mut p = Pacer::new(t0, iv, &a);
        assert_eq!(p.tick(), Duration::from_millis(20));
        assert_eq!(p.next_wake(), Some(t0));
        while let Some((i, slot)) = p.pop_due(t0) {
            p.done(i, slot, t0);
        }
        let (due, wake) = (p.next_due().unwrap(), p.next_wake().unwrap());
        assert!(wake >= due && wake - due < p.tick());
        assert_eq!((wake - t0).as_nanos() % p.tick().as_nanos(), 0);
        // Everything due up to the wake-up starts then.
        let mut n = 0;
        while p.pop_due(wake).is_some() {
            n += 1;
        }
        assert!((1..50).contains(&n), "{n} checks in one tick");
    }
}
