//! Receiving small events and acks allocates nothing per packet beyond the recovery offset
//! (a `String` of its own): arguments are copied into chunks the session owns (`arena.rs`),
//! names come from the session's cache.
//!
//! One allocation is left on purpose: serde_json allocates a stack, per packet, to skip a
//! single argument nested more than one level deep (`{"a":[1]}`), as the serde_json floor of
//! the codec figure does for the same JSON.
//!
//! A test binary of its own: `allocation-counter` replaces the global allocator, and counts
//! per thread, so nothing else running here can be counted.

use relink_proto::session::{Session, SessionConfig, SessionEvent};
use std::time::Instant;

const PACKETS: usize = 10_000;

fn connected() -> Session {
    let now = Instant::now();
    let mut session = Session::new(SessionConfig::default());
    let open = r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    session.handle_text(open, now).expect("open");
    session
        .handle_text(r#"40{"sid":"s1","pid":"p1"}"#, now)
        .expect("connect");
    while session.poll_event().is_some() {}
    while session.poll_transmit().is_some() {}
    session
}

fn frames() -> Vec<String> {
    (0..PACKETS)
        .map(|i| match i % 3 {
            // With the recovery offset a server with connection state recovery appends.
            0 => format!(r#"42["chat",{{"id":{i},"user":"ada","text":"hello, world"}},"off-{i}"]"#),
            1 => format!(r#"42{i}["ask",{{"id":{i}}},[1,2,3]]"#),
            _ => format!(r#"43{i}[{{"ok":true,"n":{i}}}]"#),
        })
        .collect()
}

#[test]
fn events_read_as_they_come_allocate_nothing_per_packet() {
    let frames = frames();
    let mut session = connected();
    let now = Instant::now();
    // The first packets warm the name cache and the event queue.
    for frame in &frames[..30] {
        session.handle_text(frame, now).expect("decodes");
        while session.poll_event().is_some() {}
    }
    let mut seen = 0;
    let info = allocation_counter::measure(|| {
        for frame in &frames[30..] {
            session.handle_text(frame, now).expect("decodes");
            while let Some(event) = session.poll_event() {
                assert!(matches!(
                    event,
                    SessionEvent::Event { .. } | SessionEvent::Ack { .. }
                ));
                seen += 1;
            }
        }
    });
    assert_eq!(seen, PACKETS - 30);
    // One per recovery offset; each chunk is reused in place once the events cut from it
    // are gone.
    let offsets = (30..PACKETS).filter(|i| i % 3 == 0).count() as u64;
    assert!(
        info.count_total <= offsets + 10,
        "{} allocations for {} packets",
        info.count_total,
        PACKETS - 30
    );
}

#[test]
fn events_kept_cost_one_allocation_per_chunk() {
    let frames = frames();
    let bytes: usize = frames.iter().map(String::len).sum();
    let mut session = connected();
    let now = Instant::now();
    let mut kept = Vec::with_capacity(PACKETS);
    let info = allocation_counter::measure(|| {
        for frame in &frames {
            session.handle_text(frame, now).expect("decodes");
            while let Some(event) = session.poll_event() {
                kept.push(event);
            }
        }
    });
    assert_eq!(kept.len(), PACKETS);
    // Offsets are strings of their own; everything else shares 8 KiB chunks, each at least
    // half used (plus the name cache and the event queue, a handful).
    let offsets = PACKETS.div_ceil(3);
    let chunks = bytes / (4 << 10) + 1;
    assert!(
        info.count_total <= (offsets + chunks + 20) as u64,
        "{} allocations for {} packets ({offsets} offsets, ~{chunks} chunks)",
        info.count_total,
        PACKETS
    );
}
