//! The shed layer's wait queue: one lane per priority, FIFO while it drains, LIFO
//! once a standing queue forms (CoDel's test: the oldest waiter has waited longer
//! than `target` for a whole `interval`) and until the queue is empty again.
//!
//! Plain logic: it decides who waits, who is displaced and who goes next. The state
//! around it holds the lock, counts permits and wakes the tasks.

use std::collections::VecDeque;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::rejection::OverloadReason;

/// Where a waiter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Waiting,
    /// Given a permit; `in_flight` calls were in flight once it was counted.
    Granted {
        in_flight: usize,
    },
    Refused(OverloadReason),
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    lane: usize,
    enqueued: Instant,
    waker: Option<Waker>,
    used: bool,
}

/// A waiter pushed out of the queue, to be woken once the lock is released.
#[derive(Debug)]
pub(crate) struct Displaced {
    pub(crate) lane: usize,
    pub(crate) waker: Option<Waker>,
}

#[derive(Debug)]
pub(crate) struct WaitQueue {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Keys of waiting slots per lane (sheddable, default, critical), oldest first.
    lanes: [VecDeque<usize>; 3],
    capacity: usize,
    target: Duration,
    interval: Duration,
    first_above: Option<Instant>,
    checked_at: Option<Instant>,
    lifo: bool,
}

impl WaitQueue {
    pub(crate) fn new(capacity: usize, target: Duration, interval: Duration) -> Self {
        // Room for the whole queue up front: no allocation per waiter.
        let prealloc = capacity.min(4096);
        Self {
            slots: Vec::with_capacity(prealloc),
            free: Vec::with_capacity(prealloc),
            lanes: std::array::from_fn(|_| VecDeque::with_capacity(prealloc)),
            capacity,
            target,
            interval,
            first_above: None,
            checked_at: None,
            lifo: false,
        }
    }

    pub(crate) fn set_limits(&mut self, capacity: usize, target: Duration, interval: Duration) {
        self.capacity = capacity;
        self.target = target;
        self.interval = interval;
    }

    /// Waiters in the queue.
    pub(crate) fn len(&self) -> usize {
        self.lanes.iter().map(VecDeque::len).sum()
    }

    /// Whether a standing queue was detected: the newest are served first.
    pub(crate) fn is_lifo(&self) -> bool {
        self.lifo
    }

    /// Whether anyone of `lane`'s priority or higher is waiting.
    pub(crate) fn has_waiters_from(&self, lane: usize) -> bool {
        self.lanes[lane.min(2)..].iter().any(|l| !l.is_empty())
    }

    /// Queues a waiter of `lane` at `now`. When the queue is full, the oldest waiter
    /// of the lowest priority below `lane` (or of `lane` itself, once the queue is
    /// standing) is displaced for it; if there is none, `None`.
    pub(crate) fn push(&mut self, lane: usize, now: Instant) -> Option<(usize, Option<Displaced>)> {
        let lane = lane.min(2);
        let mut displaced = None;
        if self.len() >= self.capacity {
            let top = if self.lifo { lane + 1 } else { lane };
            let victim = (0..top).find_map(|l| self.lanes[l].pop_front().map(|k| (l, k)))?;
            let (l, k) = victim;
            let slot = &mut self.slots[k];
            slot.state = SlotState::Refused(OverloadReason::Shed);
            displaced = Some(Displaced {
                lane: l,
                waker: slot.waker.take(),
            });
        }
        let slot = Slot {
            state: SlotState::Waiting,
            lane,
            enqueued: now,
            waker: None,
            used: true,
        };
        let key = match self.free.pop() {
            Some(k) => {
                self.slots[k] = slot;
                k
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.lanes[lane].push_back(key);
        Some((key, displaced))
    }

    /// The waiter's state; while it waits, `waker` is kept to wake it.
    pub(crate) fn poll(&mut self, key: usize, waker: &Waker) -> Option<SlotState> {
        let slot = self.slots.get_mut(key).filter(|s| s.used)?;
        if slot.state == SlotState::Waiting {
            match &slot.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => slot.waker = Some(waker.clone()),
            }
        }
        Some(slot.state)
    }

    /// Removes the waiter (it was served, refused, gave up or was dropped) and returns
    /// the state it had.
    pub(crate) fn remove(&mut self, key: usize) -> Option<SlotState> {
        let slot = self.slots.get_mut(key).filter(|s| s.used)?;
        let state = slot.state;
        let lane = slot.lane;
        slot.used = false;
        slot.waker = None;
        if state == SlotState::Waiting {
            if let Some(i) = self.lanes[lane].iter().position(|&k| k == key) {
                self.lanes[lane].remove(i);
            }
        }
        self.free.push(key);
        Some(state)
    }

    /// Picks the next waiter to serve among the lanes `eligible` allows, highest
    /// priority first, and marks it granted. Returns its key and lane; the caller
    /// counts the permit and then calls [`granted`](Self::granted).
    pub(crate) fn pop_next(
        &mut self,
        now: Instant,
        mut eligible: impl FnMut(usize) -> bool,
    ) -> Option<(usize, usize)> {
        self.update_mode(now);
        for lane in (0..3).rev() {
            if self.lanes[lane].is_empty() || !eligible(lane) {
                continue;
            }
            let key = if self.lifo {
                self.lanes[lane].pop_back()
            } else {
                self.lanes[lane].pop_front()
            };
            if let Some(k) = key {
                return Some((k, lane));
            }
        }
        None
    }

    /// Records the permit given to `key` (just popped) and returns its waker.
    pub(crate) fn granted(&mut self, key: usize, in_flight: usize) -> Option<Waker> {
        let slot = self.slots.get_mut(key).filter(|s| s.used)?;
        slot.state = SlotState::Granted { in_flight };
        slot.waker.take()
    }

    /// Refuses every waiter with `reason`; calls `f` with each one's lane and waker.
    pub(crate) fn refuse_all(
        &mut self,
        reason: OverloadReason,
        mut f: impl FnMut(usize, Option<Waker>),
    ) {
        for lane in 0..3 {
            while let Some(k) = self.lanes[lane].pop_front() {
                let slot = &mut self.slots[k];
                slot.state = SlotState::Refused(reason);
                f(lane, slot.waker.take());
            }
        }
        self.first_above = None;
        self.lifo = false;
    }

    /// CoDel's test, on the oldest waiter, once per instant: a burst of permits
    /// served at one instant takes one measure of the queue's delay, not one per
    /// waiter (the last of a burst would always find young waiters).
    fn update_mode(&mut self, now: Instant) {
        let oldest = self
            .lanes
            .iter()
            .filter_map(|l| l.front())
            .map(|&k| self.slots[k].enqueued)
            .min();
        let Some(oldest) = oldest else {
            self.first_above = None;
            self.lifo = false;
            return;
        };
        if self.checked_at == Some(now) {
            return;
        }
        self.checked_at = Some(now);
        if self.lifo {
            // Standing until it drains: serving the newest keeps the oldest waiters
            // young (they are displaced or expire), which must not flip it back.
            return;
        }
        if now.saturating_duration_since(oldest) < self.target {
            self.first_above = None;
            return;
        }
        match self.first_above {
            None => self.first_above = Some(now + self.interval),
            Some(at) if now >= at => self.lifo = true,
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn queue(cap: usize) -> WaitQueue {
        WaitQueue::new(cap, 5 * MS, 100 * MS)
    }

    fn pop_all(q: &mut WaitQueue, now: Instant) -> Vec<usize> {
        let mut out = vec![];
        while let Some((k, _)) = q.pop_next(now, |_| true) {
            q.granted(k, 1);
            out.push(k);
        }
        out
    }

    #[test]
    fn fifo_while_draining() {
        let t0 = Instant::now();
        let mut q = queue(8);
        let keys: Vec<usize> = (0..4).map(|i| q.push(1, t0 + i * MS).unwrap().0).collect();
        assert_eq!(pop_all(&mut q, t0 + 4 * MS), keys);
        assert!(!q.is_lifo());
    }

    #[test]
    fn lifo_once_a_standing_queue_forms_and_fifo_again_when_empty() {
        let t0 = Instant::now();
        let mut q = queue(64);
        let mut now = t0;
        q.push(1, now).unwrap();
        // The oldest waiter stays above 5 ms for 100 ms: standing.
        for _ in 0..12 {
            now += 10 * MS;
            q.push(1, now).unwrap();
            q.push(1, now).unwrap();
            let (k, _) = q.pop_next(now, |_| true).unwrap();
            q.granted(k, 1);
        }
        assert!(q.is_lifo());
        let newest = q.push(1, now).unwrap().0;
        assert_eq!(
            q.pop_next(now, |_| true).unwrap().0,
            newest,
            "freshest first"
        );
        pop_all(&mut q, now);
        q.push(1, now).unwrap();
        q.pop_next(now, |_| true).unwrap();
        assert!(!q.is_lifo(), "an empty queue starts over in FIFO");
    }

    #[test]
    fn short_waits_never_turn_lifo() {
        let t0 = Instant::now();
        let mut q = queue(64);
        for i in 0..1000u32 {
            let now = t0 + i * MS;
            q.push(1, now).unwrap();
            q.pop_next(now + 4 * MS, |_| true).unwrap();
        }
        assert!(!q.is_lifo());
    }

    #[test]
    fn higher_priorities_are_served_first_and_eligibility_is_respected() {
        let t0 = Instant::now();
        let mut q = queue(8);
        let s = q.push(0, t0).unwrap().0;
        let d = q.push(1, t0).unwrap().0;
        let c = q.push(2, t0).unwrap().0;
        assert_eq!(q.pop_next(t0, |_| true).unwrap(), (c, 2));
        // Only the default lane has room: the sheddable waiter stays.
        assert_eq!(q.pop_next(t0, |l| l >= 1).unwrap(), (d, 1));
        assert!(q.pop_next(t0, |l| l >= 1).is_none());
        assert_eq!(q.pop_next(t0, |_| true).unwrap(), (s, 0));
    }

    #[test]
    fn a_full_queue_displaces_lower_priorities_only() {
        let t0 = Instant::now();
        let mut q = queue(2);
        let s1 = q.push(0, t0).unwrap().0;
        let _s2 = q.push(0, t0 + MS).unwrap().0;
        // Another sheddable waiter: nobody lower to displace.
        assert!(q.push(0, t0 + 2 * MS).is_none());
        let (_, displaced) = q.push(2, t0 + 2 * MS).unwrap();
        assert_eq!(displaced.unwrap().lane, 0);
        assert_eq!(
            q.poll(s1, Waker::noop()),
            Some(SlotState::Refused(OverloadReason::Shed)),
            "oldest displaced"
        );
        assert_eq!(q.len(), 2);
        q.remove(s1);
        let (_, displaced) = q.push(1, t0 + 3 * MS).unwrap();
        assert_eq!(displaced.unwrap().lane, 0);
        assert!(
            q.push(1, t0 + 3 * MS).is_none(),
            "the queue holds critical and default only"
        );
    }

    #[test]
    fn removed_waiters_leave_their_lane_and_slots_are_reused() {
        let t0 = Instant::now();
        let mut q = queue(4);
        let a = q.push(1, t0).unwrap().0;
        let b = q.push(1, t0).unwrap().0;
        assert_eq!(q.remove(a), Some(SlotState::Waiting));
        assert_eq!(q.remove(a), None, "removing twice is harmless");
        assert_eq!(q.len(), 1);
        let c = q.push(1, t0).unwrap().0;
        assert_eq!(c, a, "slot reused");
        assert_eq!(pop_all(&mut q, t0), vec![b, c]);
    }

    #[test]
    fn refuse_all_empties_the_queue() {
        let t0 = Instant::now();
        let mut q = queue(4);
        let a = q.push(1, t0).unwrap().0;
        q.push(2, t0).unwrap();
        let mut lanes = vec![];
        q.refuse_all(OverloadReason::Drain, |l, _| lanes.push(l));
        assert_eq!(lanes, vec![1, 2]);
        assert_eq!(q.len(), 0);
        assert_eq!(
            q.poll(a, Waker::noop()),
            Some(SlotState::Refused(OverloadReason::Drain))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Pop(usize),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..3).prop_map(Op::Push),
            (0usize..3).prop_map(Op::Pop),
            (0usize..16).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Against a naive model (a list of (key, lane, order)), with short waits so the
        /// queue stays FIFO: the same waiters are queued, displaced and served in the
        /// same order.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec(op(), 0..200), cap in 0usize..6) {
            let t0 = Instant::now();
            let mut q = queue(cap);
            let mut model: Vec<(usize, usize)> = vec![]; // (key, lane), oldest first
            let mut live: Vec<usize> = vec![];
            for op in ops {
                match op {
                    Op::Push(lane) => {
                        let full = model.len() >= cap;
                        let victim = if full { model.iter().position(|&(_, l)| l < lane) .and_then(|_| {
                            let low = model.iter().map(|&(_, l)| l).filter(|&l| l < lane).min()?;
                            model.iter().position(|&(_, l)| l == low)
                        }) } else { None };
                        let got = q.push(lane, t0);
                        if full && victim.is_none() {
                            prop_assert!(got.is_none());
                        } else {
                            let (key, displaced) = got.unwrap();
                            if let Some(i) = victim {
                                let (vk, vl) = model.remove(i);
                                prop_assert_eq!(displaced.map(|d| d.lane), Some(vl));
                                prop_assert_eq!(q.remove(vk), Some(SlotState::Refused(OverloadReason::Shed)));
                                live.retain(|&k| k != vk);
                            } else {
                                prop_assert!(displaced.is_none());
                            }
                            model.push((key, lane));
                            live.push(key);
                        }
                    }
                    Op::Pop(min_lane) => {
                        let expect = (min_lane..3).rev().find_map(|l| model.iter().position(|&(_, ml)| ml == l));
                        let got = q.pop_next(t0, |l| l >= min_lane);
                        match expect {
                            None => prop_assert!(got.is_none()),
                            Some(i) => {
                                let (k, l) = model.remove(i);
                                prop_assert_eq!(got, Some((k, l)));
                                q.granted(k, 1);
                                prop_assert_eq!(q.remove(k), Some(SlotState::Granted { in_flight: 1 }));
                                live.retain(|&x| x != k);
                            }
                        }
                    }
                    Op::Remove(i) => {
                        if let Some(&k) = live.get(i) {
                            prop_assert_eq!(q.remove(k), Some(SlotState::Waiting));
                            model.retain(|&(mk, _)| mk != k);
                            live.retain(|&x| x != k);
                        }
                    }
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert!(q.len() <= cap);
            }
        }
    }
}
