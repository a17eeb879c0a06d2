//! Per-sender sequence tracking, as Heartbeat's `should_drop_message`/`is_lost_packet`:
//! every sequenced message of a sender carries its generation (`hg`) and a counter
//! (`seq`); duplicates arriving over redundant links are dropped, gaps are recorded so that
//! the missing messages can be requested again, and an older generation is a replay.
use std::collections::BTreeMap;

/// A gap wider than this resets tracking instead of requesting every message
/// (Heartbeat: "lost a lot of packets!").
pub const MAX_GAP: u64 = 250;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In order, or the first message of a generation.
    Accept,
    /// Fills a recorded gap.
    FillsGap { now_complete: bool },
    /// Arrived ahead of `missing` messages (`last` is the previous highest seq).
    AcceptWithGap { last: u64, missing: u64 },
    /// So far ahead that tracking was reset.
    Reset { last: u64 },
    /// Already seen (the normal case with several links).
    Duplicate,
    /// Older than everything we track and not a known gap.
    Stale,
}

#[derive(Debug, PartialEq, Eq)]
pub enum GenVerdict {
    Same,
    /// A newer generation: the sender restarted (`previous` = 0 on first contact).
    Newer {
        previous: u64,
    },
    /// An older generation: Heartbeat calls it an "attempted replay attack".
    Older {
        current: u64,
    },
}

#[derive(Default, Debug)]
pub struct SeqTrack {
    pub generation: u64,
    /// Highest sequence number accepted in this generation (0 = none yet).
    pub last: u64,
    /// Missing seq -> when to (re)request it (monotonic ms).
    pub missing: BTreeMap<u64, u64>,
}

impl SeqTrack {
    pub fn check_generation(&self, hg: u64) -> GenVerdict {
        use std::cmp::Ordering::*;
        match hg.cmp(&self.generation) {
            Equal => GenVerdict::Same,
            Greater => GenVerdict::Newer { previous: self.generation },
            Less => GenVerdict::Older { current: self.generation },
        }
    }

    /// Adopts a newer generation: the sender restarted, its counter starts again.
    pub fn new_generation(&mut self, hg: u64) {
        self.generation = hg;
        self.last = 0;
        self.missing.clear();
    }

    /// Classifies `seq` and updates the tracking. `request_at` is when a newly missing
    /// message should first be requested.
    pub fn observe(&mut self, seq: u64, request_at: impl Fn(u64) -> u64) -> Verdict {
        if self.last == 0 {
            self.last = seq;
            return Verdict::Accept;
        }
        if seq == self.last + 1 {
            self.last = seq;
            return Verdict::Accept;
        }
        if seq > self.last {
            let missing = seq - self.last - 1;
            let last = self.last;
            self.last = seq;
            if missing > MAX_GAP {
                self.missing.clear();
                return Verdict::Reset { last };
            }
            for s in last + 1..seq {
                self.missing.insert(s, request_at(s));
            }
            return Verdict::AcceptWithGap { last, missing };
        }
        if self.missing.remove(&seq).is_some() {
            return Verdict::FillsGap { now_complete: self.missing.is_empty() };
        }
        if seq == self.last || seq + MAX_HISTORY_WINDOW > self.last {
            Verdict::Duplicate
        } else {
            Verdict::Stale
        }
    }

    /// The peer told us (`NS_nak_rexmit`) it cannot resend `seq`: give it up.
    pub fn give_up(&mut self, seq: u64) -> bool {
        self.missing.remove(&seq).is_some()
    }
}

/// Below this distance from the highest seq an old message is an ordinary duplicate;
/// beyond it, it is stale (and suspicious).
const MAX_HISTORY_WINDOW: u64 = crate::history::MAX_HISTORY as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_gaps_and_fills() {
        let mut t = SeqTrack::default();
        t.new_generation(7);
        assert_eq!(t.observe(5, |_| 0), Verdict::Accept);
        assert_eq!(t.observe(6, |_| 0), Verdict::Accept);
        assert_eq!(t.observe(6, |_| 0), Verdict::Duplicate);
        assert_eq!(t.observe(9, |s| s * 10), Verdict::AcceptWithGap { last: 6, missing: 2 });
        assert_eq!(t.missing.get(&7), Some(&70));
        assert_eq!(t.observe(8, |_| 0), Verdict::FillsGap { now_complete: false });
        assert_eq!(t.observe(7, |_| 0), Verdict::FillsGap { now_complete: true });
        assert_eq!(t.observe(7, |_| 0), Verdict::Duplicate);
        assert_eq!(t.observe(9 + MAX_GAP + 2, |_| 0), Verdict::Reset { last: 9 });
        assert!(t.missing.is_empty());
    }

    #[test]
    fn generations_order() {
        let mut t = SeqTrack::default();
        assert_eq!(t.check_generation(3), GenVerdict::Newer { previous: 0 });
        t.new_generation(3);
        assert_eq!(t.check_generation(3), GenVerdict::Same);
        assert_eq!(t.check_generation(2), GenVerdict::Older { current: 3 });
        t.observe(10, |_| 0);
        t.new_generation(4);
        assert_eq!(t.last, 0);
        assert_eq!(t.observe(1, |_| 0), Verdict::Accept);
    }

    #[test]
    fn nak_gives_up_a_gap() {
        let mut t = SeqTrack::default();
        t.observe(1, |_| 0);
        t.observe(4, |_| 0);
        assert!(t.give_up(2));
        assert!(!t.give_up(2));
        assert_eq!(t.missing.len(), 1);
    }
}
