//! Payloads waiting for delivery: freshest first, then the backlog oldest first.

use std::collections::VecDeque;

use crate::payload::Payload;

/// A bounded in-memory queue. The newest undelivered payload goes out at the
/// next slot; older ones drain oldest-first in slots when nothing newer waits.
#[derive(Debug)]
pub struct Queue {
    fresh: Option<Payload>,
    backlog: VecDeque<Payload>,
    max: usize,
}

impl Queue {
    /// A queue holding at most `max` payloads (at least 1).
    pub fn new(max: usize) -> Self {
        Queue {
            fresh: None,
            backlog: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// Payloads waiting.
    pub fn len(&self) -> usize {
        self.backlog.len() + usize::from(self.fresh.is_some())
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a new payload; returns how many old ones were dropped for the bound.
    pub fn push(&mut self, p: Payload) -> usize {
        if let Some(older) = self.fresh.replace(p) {
            self.backlog.push_back(older);
        }
        self.enforce_bound()
    }

    /// The payload to send next.
    pub fn pop(&mut self) -> Option<Payload> {
        self.fresh.take().or_else(|| self.backlog.pop_front())
    }

    /// Puts back a payload whose attempt failed: it stays the freshest unless
    /// something newer arrived meanwhile, else it rejoins the backlog in order.
    /// Returns how many were dropped for the bound.
    pub fn requeue(&mut self, p: Payload) -> usize {
        let newest = self.fresh.is_none() && self.backlog.back().is_none_or(|b| b.seq < p.seq);
        if newest {
            self.fresh = Some(p);
        } else {
            let at = self.backlog.partition_point(|b| b.seq < p.seq);
            self.backlog.insert(at, p);
        }
        self.enforce_bound()
    }

    /// Sample time (Unix seconds) of the oldest waiting payload.
    pub fn oldest_time(&self) -> Option<u64> {
        self.backlog.front().or(self.fresh.as_ref()).map(|p| p.time)
    }

    fn enforce_bound(&mut self) -> usize {
        let mut dropped = 0;
        while self.len() > self.max {
            if self.backlog.pop_front().is_none() {
                break;
            }
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: u64) -> Payload {
        Payload::new(format!("{{\"seq\":{seq}}}").into_bytes(), seq, seq)
    }

    fn seqs(q: &mut Queue) -> Vec<u64> {
        std::iter::from_fn(|| q.pop()).map(|p| p.seq).collect()
    }

    #[test]
    fn freshest_first_then_oldest_first() {
        let mut q = Queue::new(10);
        for s in 1..=4 {
            q.push(p(s));
        }
        assert_eq!(seqs(&mut q), [4, 1, 2, 3]);
    }

    #[test]
    fn failed_fresh_stays_fresh_until_something_newer_arrives() {
        let mut q = Queue::new(10);
        q.push(p(1));
        let one = q.pop().unwrap();
        q.requeue(one);
        assert_eq!(q.pop().unwrap().seq, 1);
        // a newer one arrived while 1 was in flight
        q.push(p(2));
        q.requeue(p(1));
        assert_eq!(seqs(&mut q), [2, 1]);
    }

    #[test]
    fn failed_backlog_item_keeps_its_place() {
        let mut q = Queue::new(10);
        for s in 1..=3 {
            q.push(p(s));
        }
        assert_eq!(q.pop().unwrap().seq, 3);
        let one = q.pop().unwrap();
        q.requeue(one);
        assert_eq!(seqs(&mut q), [1, 2]);
    }

    #[test]
    fn bound_drops_oldest() {
        let mut q = Queue::new(3);
        let dropped: usize = (1..=5).map(|s| q.push(p(s))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(q.len(), 3);
        assert_eq!(q.oldest_time(), Some(3));
        assert_eq!(seqs(&mut q), [5, 3, 4]);
    }
}
