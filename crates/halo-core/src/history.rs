//! The last sequenced messages we sent, kept to answer retransmission requests
//! (Heartbeat's `MAXMSGHIST` = 500).
use halo_wire::{Message, PackedMessage};
use std::collections::VecDeque;

pub const MAX_HISTORY: usize = 500;

pub struct Sent {
    pub seq: u64,
    /// Packed: 500 unpacked messages would be a quarter of halo's memory.
    pub msg: PackedMessage,
    /// When it was last (re)transmitted, to damp duplicate requests from several peers.
    pub last_sent_ms: u64,
}

#[derive(Default)]
pub struct History {
    sent: VecDeque<Sent>,
}

pub enum Lookup<'a> {
    Found(&'a mut Sent),
    TooLow,
    NotFound,
}

impl History {
    pub fn push(&mut self, seq: u64, msg: &Message, now_ms: u64) {
        if self.sent.len() == MAX_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent { seq, msg: msg.pack(), last_sent_ms: now_ms });
    }

    pub fn lookup(&mut self, seq: u64) -> Lookup<'_> {
        let lowest = match self.sent.front() {
            Some(s) => s.seq,
            None => return Lookup::NotFound,
        };
        if seq < lowest {
            return Lookup::TooLow;
        }
        // Sequence numbers are contiguous in the history, so the index is arithmetic.
        let idx = (seq - lowest) as usize;
        match self.sent.get_mut(idx) {
            Some(s) if s.seq == seq => Lookup::Found(s),
            _ => Lookup::NotFound,
        }
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub fn highest(&self) -> Option<u64> {
        self.sent.back().map(|s| s.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_500_and_finds_by_seq() {
        let mut h = History::default();
        for seq in 1..=600 {
            h.push(seq, &Message::of_type("status"), seq);
        }
        assert_eq!(h.len(), MAX_HISTORY);
        assert!(matches!(h.lookup(100), Lookup::TooLow));
        assert!(matches!(h.lookup(601), Lookup::NotFound));
        match h.lookup(350) {
            Lookup::Found(s) => assert_eq!(s.seq, 350),
            _ => panic!("seq 350 must be in the history"),
        }
    }
}
