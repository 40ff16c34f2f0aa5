//! The bounded queue of emits on their way to the server.
//!
//! Emits go through it while connected too (the supervisor drains it in batches), and it keeps
//! them while disconnected, in order, up to a bound in packets and bytes. Plain data: the
//! locking and waking live in [`crate::lane`] and [`crate::client`].
//!
//! Generic over `W`, what waits for an acked emit's answer: a oneshot sender in the client,
//! a plain number in the simulation (see [`crate::core::connection`]).

use crate::metrics;
use relink_proto::Payload;
use relink_proto::session::EncodedEvent;
use std::collections::VecDeque;
use std::time::Duration;

/// What waits on an emit's acknowledgement.
#[derive(Debug)]
pub(crate) struct AckRequest<W> {
    /// Told the outcome, exactly once.
    pub(crate) tx: W,
    pub(crate) timeout: Duration,
    /// Resends left after a timeout or a drop; 0 means at most once.
    pub(crate) retries_left: u32,
    /// When the caller stops waiting (without retries): an emit not written by then is
    /// not written at all.
    pub(crate) deadline: Option<std::time::Instant>,
}

/// One queued emit.
#[derive(Debug)]
pub(crate) struct Outgoing<W> {
    /// Order of acceptance (set by [`Outbox::push`]), so emits re-queued after a drop go
    /// back in their place.
    pub(crate) seq: u64,
    pub(crate) body: Body<W>,
}

/// What is sent.
#[derive(Debug)]
pub(crate) enum Body<W> {
    /// A plain emit, encoded in the task that emitted it: the frame does not depend on the
    /// connection, so the supervisor only writes it.
    Encoded(EncodedEvent),
    /// A volatile emit: written on this connection or never (dropped when the link is
    /// lost before it was written).
    Volatile(EncodedEvent),
    /// An acked emit, encoded when written: its ack id belongs to that connection, and a
    /// retry needs the name and arguments again.
    Acked(Acked<W>),
}

/// An emit waiting for an acknowledgement.
#[derive(Debug)]
pub(crate) struct Acked<W> {
    pub(crate) name: String,
    pub(crate) args: Payload,
    pub(crate) ack: AckRequest<W>,
}

impl<W> Outgoing<W> {
    /// What the outbox counts against its byte bound.
    pub(crate) fn size(&self) -> usize {
        match &self.body {
            Body::Encoded(event) | Body::Volatile(event) => event.size(),
            Body::Acked(acked) => {
                acked.name.len()
                    + acked.args.as_json().len()
                    + acked
                        .args
                        .attachments()
                        .iter()
                        .map(|a| a.len())
                        .sum::<usize>()
            }
        }
    }
}

/// Our answer to a server event that asked for an ack.
#[derive(Debug)]
pub(crate) struct ServerAck {
    /// The connection the event came on: an answer for an older one is discarded.
    pub(crate) generation: u64,
    /// The answer, encoded by the task that gave it (its ack id included).
    pub(crate) frame: EncodedEvent,
}

/// The queue and its bounds.
#[derive(Debug)]
pub(crate) struct Outbox<W> {
    queue: VecDeque<Outgoing<W>>,
    bytes: usize,
    max_packets: usize,
    max_bytes: usize,
    next_seq: u64,
    /// The client is ending: nothing more is accepted.
    closed: bool,
    /// This client's parts of `relink_outbox_packets` and `relink_outbox_bytes`.
    shares: (metrics::Share, metrics::Share),
}

impl<W> Outbox<W> {
    pub(crate) fn new(max_packets: usize, max_bytes: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            max_packets,
            max_bytes,
            next_seq: 0,
            closed: false,
            shares: (
                metrics::Share::new(metrics::OUTBOX_PACKETS),
                metrics::Share::new(metrics::OUTBOX_BYTES),
            ),
        }
    }

    /// Tells the metrics what is queued now.
    fn report(&mut self) {
        self.shares.0.set(self.queue.len());
        self.shares.1.set(self.bytes);
    }

    /// Whether the client is ending (see [`Outbox::close`]).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The client is ending: refuses everything from now on and hands out what is queued,
    /// so whatever comes after it can be written (a DISCONNECT) without waiting behind an
    /// emitter that keeps emitting.
    pub(crate) fn close(&mut self) -> Vec<Outgoing<W>> {
        self.closed = true;
        self.drain()
    }

    /// The client starts again after it ended: it accepts again.
    pub(crate) fn reopen(&mut self) {
        self.closed = false;
    }

    /// The link is lost: volatile emits not yet written are dropped (now or never), and
    /// what was in flight and will be retried goes back first, in its order.
    pub(crate) fn link_lost(&mut self, requeue: Vec<Outgoing<W>>) {
        let before = self.queue.len();
        self.queue
            .retain(|item| !matches!(item.body, Body::Volatile(_)));
        if self.queue.len() != before {
            self.bytes = self.queue.iter().map(Outgoing::size).sum();
            self.report();
        }
        self.requeue_front(requeue);
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Whether an item of `size` bytes fits now.
    pub(crate) fn has_room(&self, size: usize) -> bool {
        self.queue.len() < self.max_packets && self.bytes.saturating_add(size) <= self.max_bytes
    }

    /// Whether an item of `size` bytes could ever fit.
    pub(crate) fn could_fit(&self, size: usize) -> bool {
        size <= self.max_bytes
    }

    /// Appends, numbering the item in order of acceptance (the number is returned), or
    /// hands it back when the bound is reached (boxed: the rare path).
    pub(crate) fn push(&mut self, mut item: Outgoing<W>) -> Result<u64, Box<Outgoing<W>>> {
        let size = item.size();
        if self.closed || !self.has_room(size) {
            return Err(Box::new(item));
        }
        let seq = self.next_seq();
        item.seq = seq;
        self.bytes += size;
        self.queue.push_back(item);
        self.report();
        Ok(seq)
    }

    /// Takes out the item numbered `seq`, if it is still queued.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<Outgoing<W>> {
        let index = self.queue.iter().position(|item| item.seq == seq)?;
        let item = self.queue.remove(index)?;
        self.bytes -= item.size();
        self.report();
        Some(item)
    }

    /// Puts emits that were in flight back at the front, in their original order.
    ///
    /// They were accepted once, so they go back even past the bound: losing them would break
    /// the promise made when they were accepted.
    pub(crate) fn requeue_front(&mut self, mut items: Vec<Outgoing<W>>) {
        items.sort_by_key(|i| std::cmp::Reverse(i.seq));
        for item in items {
            self.bytes += item.size();
            self.queue.push_front(item);
        }
        self.report();
    }

    /// Takes the oldest item.
    pub(crate) fn pop(&mut self) -> Option<Outgoing<W>> {
        let item = self.queue.pop_front()?;
        self.bytes -= item.size();
        self.report();
        Some(item)
    }

    /// Takes everything.
    fn drain(&mut self) -> Vec<Outgoing<W>> {
        self.bytes = 0;
        let items = self.queue.drain(..).collect();
        self.report();
        items
    }

    /// The byte bound.
    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Packets queued.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outbox = super::Outbox<()>;
    type Outgoing = super::Outgoing<()>;

    fn item(outbox: &mut Outbox, name: &str, arg: &str) -> Outgoing {
        let args = Payload::json(arg).expect("json");
        Outgoing {
            seq: outbox.next_seq(),
            body: Body::Encoded(EncodedEvent::new("/", name, &args)),
        }
    }

    /// The event name, read back from the frame.
    fn name(item: &Outgoing) -> String {
        let (Body::Encoded(event) | Body::Volatile(event)) = &item.body else {
            panic!("tests queue encoded events")
        };
        let (name, _): (String, serde_json::Value) =
            serde_json::from_str(&event.text()[2..]).expect("an event frame");
        name
    }

    #[test]
    fn keeps_order_and_counts_bytes() {
        let mut o = Outbox::new(10, 1000);
        let a = item(&mut o, "a", "1");
        let b = item(&mut o, "b", "22");
        let (sa, sb) = (a.size(), b.size());
        o.push(a).expect("room");
        o.push(b).expect("room");
        assert_eq!((o.len(), o.bytes()), (2, sa + sb));
        assert_eq!(o.pop().map(|i| name(&i)), Some("a".into()));
        assert_eq!(o.bytes(), sb);
        assert_eq!(o.pop().map(|i| name(&i)), Some("b".into()));
        assert_eq!((o.len(), o.bytes()), (0, 0));
    }

    #[test]
    fn removing_by_number_frees_the_room_and_keeps_the_rest_in_order() {
        let mut o = Outbox::new(10, 1000);
        let mut seqs = Vec::new();
        for (n, arg) in [("a", "1"), ("b", "22"), ("c", "3")] {
            let i = item(&mut o, n, arg);
            seqs.push(o.push(i).expect("room"));
        }
        let before = o.bytes();
        let b = o.remove(seqs[1]).expect("queued");
        assert_eq!(name(&b), "b");
        assert_eq!(o.bytes(), before - b.size());
        assert!(o.remove(seqs[1]).is_none(), "gone already");
        assert_eq!(o.pop().map(|i| name(&i)), Some("a".into()));
        assert_eq!(o.pop().map(|i| name(&i)), Some("c".into()));
        assert_eq!(o.bytes(), 0);
    }

    #[test]
    fn bounded_by_packets_and_bytes_and_hands_items_back() {
        let mut o = Outbox::new(2, 1000);
        for n in ["a", "b"] {
            let i = item(&mut o, n, "x");
            o.push(i).expect("room");
        }
        let c = item(&mut o, "c", "x");
        let full = o.push(c).expect_err("full by packets");
        assert_eq!((name(&full).as_str(), o.len()), ("c", 2));

        let mut o = Outbox::new(100, 20);
        let big = item(&mut o, "big", &"y".repeat(30));
        assert!(!o.could_fit(big.size()));
        let back = o.push(big).expect_err("full by bytes");
        assert_eq!(name(&back), "big", "handed back");
    }

    #[test]
    fn a_lost_link_drops_volatile_emits_and_puts_the_retried_first() {
        let mut o = Outbox::new(10, 1000);
        let plain = item(&mut o, "plain", "1");
        o.push(plain).expect("room");
        let Body::Encoded(event) = item(&mut o, "volatile", "2").body else {
            unreachable!()
        };
        o.push(Outgoing {
            seq: 0,
            body: Body::Volatile(event),
        })
        .expect("room");
        let retried = item(&mut o, "retried", "3");
        let (keep, retried_size) = (o.bytes(), retried.size());
        o.link_lost(vec![retried]);
        let names: Vec<String> = std::iter::from_fn(|| o.pop()).map(|i| name(&i)).collect();
        assert_eq!(names, vec!["retried", "plain"], "the volatile one is gone");
        assert!(keep > 0 && retried_size > 0);
        assert_eq!(o.bytes(), 0, "bytes follow what is left");
    }

    #[test]
    fn closing_hands_out_everything_and_marks_it_closed() {
        let mut o = Outbox::new(10, 1000);
        for n in ["a", "b"] {
            let i = item(&mut o, n, "x");
            o.push(i).expect("room");
        }
        let left: Vec<String> = o.close().iter().map(name).collect();
        assert_eq!(left, vec!["a", "b"]);
        assert!(o.is_closed());
        assert_eq!((o.len(), o.bytes()), (0, 0));
    }

    #[test]
    fn requeued_items_go_first_in_original_order() {
        let mut o = Outbox::new(2, 1000);
        let first = item(&mut o, "first", "1");
        let second = item(&mut o, "second", "2");
        let later = item(&mut o, "later", "3");
        o.push(later).expect("room");
        o.requeue_front(vec![second, first]);
        assert_eq!(
            o.len(),
            3,
            "requeue may pass the bound: nothing accepted is lost"
        );
        let names: Vec<String> = std::iter::from_fn(|| o.pop()).map(|i| name(&i)).collect();
        assert_eq!(names, vec!["first", "second", "later"]);
    }
}

#[cfg(all(test, feature = "metrics"))]
mod metrics_tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    type Outbox = super::Outbox<()>;

    fn item(outbox: &mut Outbox, arg: &str) -> Outgoing<()> {
        let args = Payload::json(arg).expect("json");
        Outgoing {
            seq: outbox.next_seq(),
            body: Body::Encoded(EncodedEvent::new("/", "e", &args)),
        }
    }

    /// The gauges' values: the recorder hands out what changed since the last snapshot,
    /// added to `seen`.
    fn gauges(recorder: &DebuggingRecorder, seen: &mut (f64, f64)) -> (f64, f64) {
        for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
            if let DebugValue::Gauge(v) = value {
                match key.key().name() {
                    crate::metrics::OUTBOX_PACKETS => seen.0 += v.into_inner(),
                    crate::metrics::OUTBOX_BYTES => seen.1 += v.into_inner(),
                    _ => {}
                }
            }
        }
        *seen
    }

    #[test]
    fn gauges_sum_every_outbox_and_forget_one_that_is_dropped() {
        let recorder = DebuggingRecorder::new();
        let mut seen = (0.0, 0.0);
        ::metrics::with_local_recorder(&recorder, || {
            let mut a = Outbox::new(10, 1 << 20);
            let mut b = Outbox::new(10, 1 << 20);
            let first = item(&mut a, "x");
            let size = first.size() as f64;
            a.push(first).expect("room");
            let second = item(&mut a, "y");
            a.push(second).expect("room");
            let third = item(&mut b, "z");
            b.push(third).expect("room");
            assert_eq!(gauges(&recorder, &mut seen), (3.0, 3.0 * size));
            a.pop().expect("queued");
            assert_eq!(gauges(&recorder, &mut seen), (2.0, 2.0 * size));
            let taken = b.close();
            assert_eq!(taken.len(), 1);
            assert_eq!(gauges(&recorder, &mut seen), (1.0, size));
            b.requeue_front(taken);
            assert_eq!(gauges(&recorder, &mut seen), (2.0, 2.0 * size));
            // A client that ends takes its share back, whatever it still held.
            drop(b);
            drop(a);
            assert_eq!(gauges(&recorder, &mut seen), (0.0, 0.0));
        });
    }
}
