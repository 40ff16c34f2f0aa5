//! Inbound flow control: what happens when the application reads slower than the server
//! sends, the one byte budget that `Events` and every handler's queue share, and the
//! hand-over from the connection task to a reader.
//!
//! The hand-over is a queue behind a mutex that the connection task appends a batch to
//! (one lock per batch) and the reader swaps out whole (one lock per batch), with one
//! wake-up per batch and only when the reader is parked. The budget is two counters: the
//! connection task adds what it hands over, the reader takes back what it has read, a
//! stretch (1/16 of the budget) at a time. With [`Overflow::Backpressure`] the connection task stops reading the
//! socket while the budget is spent ([`Budget::blocks`]) and the reader wakes it once it
//! has made a stretch of room (one wake-up per stretch, not per event); with [`Overflow::Drop`] it goes on reading and drops what comes while the
//! budget is spent, and the reader is told how much (a notice, where the reader has one).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// What the connection does when the events waiting for the application (in
/// [`crate::Events`] and in every handler's queue together) reach
/// [`crate::ClientBuilder::max_buffered_bytes`] (or [`crate::ClientBuilder::event_buffer`]
/// items, when one is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Nothing is dropped (the default): the connection stops reading the socket until the
    /// application makes room, so TCP pushes back on the server, as the official client
    /// does while its handlers run. Emits still go out meanwhile.
    #[default]
    Backpressure,
    /// The connection keeps reading, and what does not fit is dropped, counted and told
    /// ([`crate::Incoming::Lagged`], a WARN per episode, the `relink_events_dropped_total`
    /// metric): for applications that want the freshest data (live cursors, telemetry)
    /// rather than all of it.
    Drop,
}

/// What an item costs on top of its bytes, so that a flood of empty events is bounded too
/// (about what an event's bookkeeping takes in memory).
pub(crate) const ITEM_COST: usize = 64;

/// Most items collected before a hand-over (and frames read per round by the driver).
pub(crate) const BATCH: usize = 64;

/// Something handed to a reader.
pub(crate) trait Item: Sized {
    /// What it weighs against the budget (the same every time it is asked).
    fn weight(&self) -> usize;
    /// The notice that `missed` items were dropped, for readers that have one.
    fn lagged(missed: u64) -> Option<Self>;
}

/// The budget of everything that waits for the application, shared by every queue of one
/// client.
pub(crate) struct Budget {
    policy: Overflow,
    max_items: usize,
    max_bytes: usize,
    items: AtomicUsize,
    bytes: AtomicUsize,
    /// The driver wants to hear when there is room (it stopped reading, or owes a notice).
    waiting: AtomicBool,
    on_room: Box<dyn Fn() + Send + Sync>,
    /// Items dropped under [`Overflow::Drop`], over the client's life.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("policy", &self.policy)
            .field("items", &self.items)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// `on_room` wakes the driver: called by a reader that made room while it waits.
    pub(crate) fn new(
        policy: Overflow,
        max_items: usize,
        max_bytes: usize,
        on_room: impl Fn() + Send + Sync + 'static,
    ) -> Arc<Budget> {
        Arc::new(Budget {
            policy,
            max_items: max_items.max(1),
            max_bytes: max_bytes.max(1),
            items: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            on_room: Box::new(on_room),
            dropped: AtomicU64::new(0),
        })
    }

    /// The overflow policy (the simulation checks what it may see against it).
    #[cfg(test)]
    pub(crate) fn policy(&self) -> Overflow {
        self.policy
    }

    /// Whether what waits has reached a bound. Admission is "not full yet", not "fits", so
    /// the bound can be passed by one item: any item, however large, gets through.
    pub(crate) fn full(&self) -> bool {
        self.bytes.load(Ordering::SeqCst) >= self.max_bytes
            || self.items.load(Ordering::SeqCst) >= self.max_items
    }

    /// What waits now: (items, bytes).
    #[cfg(test)]
    pub(crate) fn used(&self) -> (usize, usize) {
        (
            self.items.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }

    /// Items dropped so far (only under [`Overflow::Drop`]).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the driver must stop reading: backpressure, and the budget is spent (or was,
    /// and not a stretch of it has been given back yet). If so, the reader that gives back
    /// that stretch wakes it (`on_room`).
    pub(crate) fn blocks(&self) -> bool {
        self.policy == Overflow::Backpressure && self.wait_for_room()
    }

    /// Asks to be woken when there is room again; false (and no wake-up owed) when there is
    /// room already. Room again means a stretch below the bound, not one byte below it: the
    /// driver then reads a batch, not one frame per wake-up.
    fn wait_for_room(&self) -> bool {
        let spent = self.full() || (self.waiting.load(Ordering::SeqCst) && !self.room_again());
        if !spent {
            self.waiting.store(false, Ordering::SeqCst);
            return false;
        }
        self.waiting.store(true, Ordering::SeqCst);
        // A reader may have given room back between the look and the flag, and seen no flag.
        if self.room_again() {
            self.waiting.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// A stretch (1/16) of the budget is free again, in bytes and in items.
    fn room_again(&self) -> bool {
        self.bytes.load(Ordering::SeqCst) <= self.max_bytes - self.step_bytes()
            && self.items.load(Ordering::SeqCst) <= self.max_items - self.step_items()
    }

    fn step_bytes(&self) -> usize {
        (self.max_bytes / 16).max(1)
    }

    fn step_items(&self) -> usize {
        (self.max_items / 16).max(1)
    }

    fn charge(&self, items: usize, bytes: usize) {
        self.items.fetch_add(items, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// Gives back what a reader has read (or dropped unread); wakes the driver if it
    /// waits for room and there is a stretch of it now.
    fn release(&self, items: usize, bytes: usize) {
        if items == 0 && bytes == 0 {
            return;
        }
        self.items.fetch_sub(items, Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst)
            && self.room_again()
            && self.waiting.swap(false, Ordering::SeqCst)
        {
            (self.on_room)();
        }
    }

    /// Whether a reader that has read this much should give it back now: a stretch of the
    /// budget, in bytes or in items.
    fn release_due(&self, (items, bytes): (usize, usize)) -> bool {
        bytes >= self.step_bytes() || items >= self.step_items()
    }
}

/// The queue between one sender and one reader.
struct Queue<T> {
    inner: Mutex<Inner<T>>,
    /// The reader is gone: nothing more is kept for it.
    reader_gone: AtomicBool,
    /// The sender gave up on the reader (a handler removed): what waits is discarded.
    abandoned: AtomicBool,
}

struct Inner<T> {
    items: VecDeque<T>,
    /// The reader, while it is parked on an empty queue.
    waker: Option<Waker>,
    /// The sender is gone: once empty, the queue has ended.
    closed: bool,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A sender and its reader over `budget`; `reader` names the reader in logs.
pub(crate) fn queue<T: Item>(budget: &Arc<Budget>, reader: &str) -> (Sender<T>, Receiver<T>) {
    let queue = Arc::new(Queue {
        inner: Mutex::new(Inner {
            items: VecDeque::new(),
            waker: None,
            closed: false,
        }),
        reader_gone: AtomicBool::new(false),
        abandoned: AtomicBool::new(false),
    });
    let sender = Sender {
        queue: Arc::clone(&queue),
        budget: Arc::clone(budget),
        pending: VecDeque::new(),
        missed: 0,
        reader: reader.into(),
    };
    let receiver = Receiver {
        queue,
        budget: Arc::clone(budget),
        local: VecDeque::new(),
        unreleased: (0, 0),
    };
    (sender, receiver)
}

/// The connection task's end: items are admitted (or, under [`Overflow::Drop`], dropped
/// while the budget is spent), collected, and handed over a batch at a time. Never waits.
pub(crate) struct Sender<T: Item> {
    queue: Arc<Queue<T>>,
    budget: Arc<Budget>,
    /// Admitted and not handed over yet, in order.
    pending: VecDeque<T>,
    /// Dropped since the reader was last told (told by a notice before the next item).
    missed: u64,
    /// Who reads, for the WARN.
    reader: Box<str>,
}

/// What became of a pushed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Admitted; the batch is not full yet.
    Kept,
    /// Admitted, and a batch is full: hand it over ([`Sender::flush`]).
    BatchFull,
    /// Dropped ([`Overflow::Drop`] with the budget spent).
    Dropped,
    /// The reader is gone.
    Gone,
}

impl<T: Item> Sender<T> {
    /// Admits `item`, or drops and counts it under [`Overflow::Drop`] while the budget is
    /// spent. Under [`Overflow::Backpressure`] it is always admitted: the driver stops
    /// reading before the next one ([`Budget::blocks`]).
    pub(crate) fn push(&mut self, item: T) -> Pushed {
        if self.queue.reader_gone.load(Ordering::Relaxed) {
            return Pushed::Gone;
        }
        if self.budget.policy == Overflow::Drop && self.budget.full() {
            if self.missed == 0 {
                tracing::warn!(
                    reader = %self.reader,
                    "events dropped: the application is not keeping up (overflow policy: drop)"
                );
            }
            self.missed += 1;
            self.budget.dropped.fetch_add(1, Ordering::Relaxed);
            crate::metrics::events_dropped(1);
            // The reader that makes room wakes the driver, which tells it what it missed.
            self.budget.wait_for_room();
            return Pushed::Dropped;
        }
        self.tell_missed();
        self.admit(item);
        if self.pending.len() >= BATCH {
            Pushed::BatchFull
        } else {
            Pushed::Kept
        }
    }

    fn admit(&mut self, item: T) {
        self.budget.charge(1, item.weight());
        self.pending.push_back(item);
    }

    /// Queues the notice of what was dropped, if anything was (and the reader has one).
    fn tell_missed(&mut self) {
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            if let Some(notice) = T::lagged(missed) {
                self.admit(notice);
            }
        }
    }

    /// Gives up on the reader: what waits for it and what comes is discarded (its budget
    /// given back), and it ends after the item it has.
    pub(crate) fn abandon(&mut self) {
        self.queue.abandoned.store(true, Ordering::SeqCst);
        self.discard();
        let waker = self.queue.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the reader is gone (nothing pushed reaches anybody).
    pub(crate) fn is_gone(&self) -> bool {
        self.queue.reader_gone.load(Ordering::Relaxed)
    }

    /// Hands what is pending to the reader, with the notice of what was dropped if there
    /// is room for it now.
    pub(crate) fn flush(&mut self) {
        if self.missed > 0 && !self.budget.full() {
            self.tell_missed();
        }
        if self.pending.is_empty() {
            return;
        }
        let waker = {
            let mut inner = self.queue.lock();
            if self.queue.reader_gone.load(Ordering::Relaxed)
                || self.queue.abandoned.load(Ordering::Relaxed)
            {
                drop(inner);
                self.discard();
                return;
            }
            if inner.items.is_empty() {
                std::mem::swap(&mut inner.items, &mut self.pending);
            } else {
                inner.items.append(&mut self.pending);
            }
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The end: what is pending goes, with the notice of what was dropped whatever the
    /// room (nothing comes after it).
    pub(crate) fn finish(&mut self) {
        self.tell_missed();
        self.flush();
    }

    /// Items admitted for a reader that is gone: their budget is given back.
    fn discard(&mut self) {
        let (items, bytes) = self
            .pending
            .drain(..)
            .fold((0, 0), |(n, b), item| (n + 1, b + item.weight()));
        self.budget.release(items, bytes);
    }
}

impl<T: Item> Drop for Sender<T> {
    fn drop(&mut self) {
        // What was admitted is the reader's (a handler replaced or removed finishes it).
        self.flush();
        let waker = {
            let mut inner = self.queue.lock();
            inner.closed = true;
            inner.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The reader's end.
pub(crate) struct Receiver<T: Item> {
    queue: Arc<Queue<T>>,
    budget: Arc<Budget>,
    /// The batch being read.
    local: VecDeque<T>,
    /// Read and not given back to the budget yet: (items, bytes).
    unreleased: (usize, usize),
}

impl<T: Item> Receiver<T> {
    /// The next item; `None` once the sender is gone and everything was read.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.queue.abandoned.load(Ordering::SeqCst) {
            let discarded = self.give_back_all();
            if discarded > 0 {
                tracing::debug!(discarded, "a removed handler's events discarded");
            }
            return Poll::Ready(None);
        }
        if let Some(item) = self.next_local() {
            return Poll::Ready(Some(item));
        }
        let mut inner = self.queue.lock();
        if inner.items.is_empty() {
            if inner.closed {
                return Poll::Ready(None);
            }
            if !inner
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut inner.items, &mut self.local);
        drop(inner);
        Poll::Ready(self.next_local())
    }

    /// The next item without waiting: `Ready(None)` once ended, `Pending` when nothing is
    /// there yet.
    #[cfg(test)]
    pub(crate) fn try_next(&mut self) -> Poll<Option<T>> {
        let waker = Waker::noop();
        self.poll_next(&mut Context::from_waker(waker))
    }

    /// The next item of the batch being read, giving back what was read a stretch at a
    /// time (and when the batch is done).
    fn next_local(&mut self) -> Option<T> {
        let Some(item) = self.local.pop_front() else {
            self.release();
            return None;
        };
        self.unreleased.0 += 1;
        self.unreleased.1 += item.weight();
        if self.local.is_empty() || self.budget.release_due(self.unreleased) {
            self.release();
        }
        Some(item)
    }

    fn release(&mut self) {
        let (items, bytes) = std::mem::take(&mut self.unreleased);
        self.budget.release(items, bytes);
    }
}

impl<T: Item> Receiver<T> {
    /// Gives back everything kept for this reader, read or not; how many were unread.
    fn give_back_all(&mut self) -> usize {
        let rest = std::mem::take(&mut self.queue.lock().items);
        let unread = self.local.len() + rest.len();
        let (items, bytes) = self
            .local
            .drain(..)
            .chain(rest)
            .fold(self.unreleased, |(n, b), item| (n + 1, b + item.weight()));
        self.unreleased = (0, 0);
        self.budget.release(items, bytes);
        unread
    }
}

impl<T: Item> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Nobody reads any more: nothing more is kept, and what was kept is given back.
        self.queue.reader_gone.store(true, Ordering::Relaxed);
        self.give_back_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A numbered item of `size` bytes; a notice is numbered 0 and carries the count.
    #[derive(Debug, PartialEq)]
    enum It {
        N(u64, usize),
        Lagged(u64),
    }

    impl Item for It {
        fn weight(&self) -> usize {
            match self {
                It::N(_, size) => ITEM_COST + size,
                It::Lagged(_) => ITEM_COST,
            }
        }
        fn lagged(missed: u64) -> Option<Self> {
            Some(It::Lagged(missed))
        }
    }

    fn budget(policy: Overflow, items: usize, bytes: usize) -> (Arc<Budget>, Arc<AtomicUsize>) {
        let woken = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&woken);
        let budget = Budget::new(policy, items, bytes, move || {
            count.fetch_add(1, Ordering::SeqCst);
        });
        (budget, woken)
    }

    fn next(rx: &mut Receiver<It>) -> Option<It> {
        match rx.try_next() {
            Poll::Ready(item) => item,
            Poll::Pending => panic!("nothing there"),
        }
    }

    #[test]
    fn backpressure_admits_everything_and_blocks_until_the_reader_makes_room() {
        let (budget, woken) = budget(Overflow::Backpressure, usize::MAX, 10 * ITEM_COST);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        for n in 1..=10 {
            assert!(!budget.blocks(), "room before item {n}");
            assert_ne!(tx.push(It::N(n, 0)), Pushed::Dropped);
        }
        assert!(budget.blocks(), "spent: the driver stops reading");
        tx.flush();
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        // The reader reads one: the driver waits for room, so it is given back at once.
        assert_eq!(next(&mut rx), Some(It::N(1, 0)));
        assert_eq!(woken.load(Ordering::SeqCst), 1, "the driver is woken once");
        assert!(!budget.blocks());
        for n in 2..=10 {
            assert_eq!(next(&mut rx), Some(It::N(n, 0)));
        }
        assert_eq!(budget.used(), (0, 0), "everything read is given back");
        assert_eq!(
            woken.load(Ordering::SeqCst),
            1,
            "no wake-up nobody waits for"
        );
        assert_eq!(budget.dropped(), 0);
        drop(tx);
        assert_eq!(next(&mut rx), None);
    }

    #[test]
    fn one_item_passes_the_bound_whatever_its_size() {
        let (budget, _) = budget(Overflow::Backpressure, usize::MAX, 100);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        tx.push(It::N(1, 10_000));
        assert!(budget.blocks());
        tx.flush();
        assert_eq!(next(&mut rx), Some(It::N(1, 10_000)));
        assert!(!budget.blocks());
    }

    #[test]
    fn drop_policy_drops_counts_and_tells_before_the_next_item() {
        let (budget, woken) = budget(Overflow::Drop, 2, usize::MAX);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        let pushed: Vec<_> = (1..=5).map(|n| tx.push(It::N(n, 0))).collect();
        assert_eq!(pushed[..2], [Pushed::Kept, Pushed::Kept]);
        assert!(pushed[2..].iter().all(|p| *p == Pushed::Dropped));
        assert!(!budget.blocks(), "the drop policy never stops reading");
        assert_eq!(budget.dropped(), 3);
        tx.flush();
        assert_eq!(next(&mut rx), Some(It::N(1, 0)));
        assert_eq!(woken.load(Ordering::SeqCst), 1, "room: the driver tells");
        tx.flush();
        assert_eq!(next(&mut rx), Some(It::N(2, 0)));
        assert_eq!(next(&mut rx), Some(It::Lagged(3)));
        tx.push(It::N(6, 0));
        tx.flush();
        assert_eq!(next(&mut rx), Some(It::N(6, 0)));
        assert_eq!(budget.used(), (0, 0));
    }

    #[test]
    fn at_the_end_the_reader_is_told_whatever_the_room() {
        let (budget, _) = budget(Overflow::Drop, 1, usize::MAX);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        for n in 1..=3 {
            tx.push(It::N(n, 0));
        }
        tx.finish();
        drop(tx);
        assert_eq!(next(&mut rx), Some(It::N(1, 0)));
        assert_eq!(next(&mut rx), Some(It::Lagged(2)));
        assert_eq!(next(&mut rx), None);
    }

    #[test]
    fn a_reader_that_goes_away_gives_its_budget_back() {
        let (budget, woken) = budget(Overflow::Backpressure, usize::MAX, 4 * ITEM_COST);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        for n in 1..=3 {
            tx.push(It::N(n, 0));
        }
        tx.flush();
        assert_eq!(next(&mut rx), Some(It::N(1, 0)));
        tx.push(It::N(4, 0));
        tx.push(It::N(5, 0));
        assert!(budget.blocks());
        drop(rx);
        assert_eq!(
            woken.load(Ordering::SeqCst),
            1,
            "the waiting driver is woken"
        );
        tx.flush();
        assert_eq!(budget.used(), (0, 0), "nothing kept for nobody");
        assert_eq!(tx.push(It::N(6, 0)), Pushed::Gone);
        assert_eq!(budget.used(), (0, 0));
    }

    #[test]
    fn an_abandoned_reader_ends_and_gives_its_budget_back() {
        let (budget, _) = budget(Overflow::Backpressure, usize::MAX, 3 * ITEM_COST);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        for n in 1..=3 {
            tx.push(It::N(n, 0));
        }
        tx.flush();
        assert_eq!(next(&mut rx), Some(It::N(1, 0)));
        tx.push(It::N(4, 0));
        assert!(budget.blocks());
        tx.abandon();
        assert_eq!(next(&mut rx), None, "ends after the item it had");
        drop(tx);
        assert_eq!(budget.used(), (0, 0));
        assert!(!budget.blocks());
    }

    #[test]
    fn two_queues_share_one_budget() {
        let (budget, _) = budget(Overflow::Backpressure, usize::MAX, 2 * ITEM_COST);
        let (mut a, mut ra) = queue::<It>(&budget, "test");
        let (mut b, mut rb) = queue::<It>(&budget, "test");
        a.push(It::N(1, 0));
        assert!(!budget.blocks());
        b.push(It::N(2, 0));
        assert!(budget.blocks(), "the second queue spent the rest");
        a.flush();
        b.flush();
        assert_eq!(next(&mut rb), Some(It::N(2, 0)));
        assert!(!budget.blocks());
        assert_eq!(next(&mut ra), Some(It::N(1, 0)));
        assert_eq!(budget.used(), (0, 0));
    }

    #[tokio::test]
    async fn a_parked_reader_is_woken_by_the_batch_and_the_end() {
        let (budget, _) = budget(Overflow::Backpressure, usize::MAX, usize::MAX);
        let (mut tx, mut rx) = queue::<It>(&budget, "test");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = std::future::poll_fn(|cx| rx.poll_next(cx)).await {
                got.push(item);
            }
            got
        });
        for n in 1..=(BATCH as u64 * 3 + 1) {
            if tx.push(It::N(n, 0)) == Pushed::BatchFull {
                tx.flush();
                tokio::task::yield_now().await;
            }
        }
        tx.flush();
        drop(tx);
        let got = reader.await.expect("reader");
        let expected: Vec<_> = (1..=(BATCH as u64 * 3 + 1)).map(|n| It::N(n, 0)).collect();
        assert_eq!(got, expected);
        assert_eq!(budget.used(), (0, 0));
    }
}
