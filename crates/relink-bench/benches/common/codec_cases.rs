//! The codec figure: typical packets decoded and encoded by relink and by bare serde_json on
//! the same JSON (the floor). rust_socketio's packet codec is crate-private in 0.6 (`pub(crate)
//! mod packet`), so it cannot be called on its own; its per-packet cost shows only inside the
//! end-to-end figures.
//!
//! - decode: one received frame (plus its attachments) to what the client hands to the user.
//!   relink: `Session::handle_text`/`handle_binary` + `poll_event` (name and arguments, kept
//!   as raw JSON). Floor: `serde_json::from_str::<IgnoredAny>` of the packet's JSON, i.e.
//!   validating it, which every decoder has to do.
//! - encode: the user's arguments (`serde_json::Value`s) to the frame's text. relink:
//!   `Payload::push` + `Session::emit`/`ack` + `poll_transmit`. Floor: `serde_json::to_string`
//!   of `["name", args...]`.

use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use relink_proto::Payload;
use relink_proto::binary::Data;
use relink_proto::session::{Session, SessionConfig, SessionEvent, Transmit};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One typical packet.
pub struct Case {
    /// Short name, used in criterion ids and the table.
    pub name: &'static str,
    /// What the table calls it.
    pub label: &'static str,
    /// The event name (empty for an ack).
    pub event: &'static str,
    /// The ack id, for an ack.
    pub ack_id: Option<u64>,
    /// The arguments, as a user holds them.
    pub args: Vec<Value>,
    /// The binary case's argument, with the bytes in place.
    pub data: Option<Data>,
    /// The text frame on the wire, Engine.IO `4` included.
    pub frame: String,
    /// The binary frames after it.
    pub attachments: Vec<Bytes>,
}

impl Case {
    /// The JSON part of the frame (what the floor parses).
    pub fn json(&self) -> &str {
        let start = self.frame.find(['[', '{']).unwrap_or(0);
        &self.frame[start..]
    }
}

/// The four packets of the figure.
pub fn cases() -> Vec<Case> {
    let small = json!({"id": 42, "user": "ada", "text": "hello, world"});
    let items: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "id": i,
                "name": format!("item-{i:04}"),
                "tags": ["alpha", "beta", "gamma"],
                "price": 12.5 + f64::from(i),
                "stock": i * 7,
                "active": i % 2 == 0,
            })
        })
        .collect();
    let big = json!({"page": 1, "items": items});
    let parts: Vec<Bytes> = (0u8..3).map(|i| Bytes::from(vec![i; 1024])).collect();
    let mut object = BTreeMap::new();
    object.insert("name".to_owned(), Data::String("photo.jpg".into()));
    object.insert(
        "parts".to_owned(),
        Data::Array(parts.iter().cloned().map(Data::Binary).collect()),
    );
    let placeholders = json!({
        "name": "photo.jpg",
        "parts": [
            {"_placeholder": true, "num": 0},
            {"_placeholder": true, "num": 1},
            {"_placeholder": true, "num": 2},
        ],
    });
    let ack = json!({"ok": true, "id": 12});
    vec![
        Case {
            name: "small",
            label: "small event",
            event: "chat",
            ack_id: None,
            frame: format!(r#"42["chat",{small}]"#),
            args: vec![small],
            data: None,
            attachments: Vec::new(),
        },
        Case {
            name: "json-4k",
            label: "4 KiB JSON event",
            event: "update",
            ack_id: None,
            frame: format!(r#"42["update",{big}]"#),
            args: vec![big],
            data: None,
            attachments: Vec::new(),
        },
        Case {
            name: "binary-3",
            label: "event + 3 binary attachments",
            event: "upload",
            ack_id: None,
            frame: format!(r#"453-["upload",{placeholders}]"#),
            args: vec![placeholders],
            data: Some(Data::Object(object)),
            attachments: parts,
        },
        Case {
            name: "ack",
            label: "ack",
            event: "",
            ack_id: Some(12),
            frame: format!(r#"4312[{ack}]"#),
            args: vec![ack],
            data: None,
            attachments: Vec::new(),
        },
    ]
}

/// A relink session in the connected state.
pub fn connected_session() -> Session {
    let mut session = Session::new(SessionConfig::default());
    let now = Instant::now();
    session
        .handle_text(
            r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":100000000}"#,
            now,
        )
        .expect("open");
    session
        .handle_text(r#"40{"sid":"s1"}"#, now)
        .expect("connect");
    while session.poll_transmit().is_some() {}
    while session.poll_event().is_some() {}
    session
}

/// relink's receive path for one frame and its attachments.
pub fn relink_decode(session: &mut Session, case: &Case, now: Instant) -> Option<SessionEvent> {
    session.handle_text(&case.frame, now).ok()?;
    for attachment in &case.attachments {
        session.handle_binary(attachment.clone(), now).ok()?;
    }
    session.poll_event()
}

/// relink's send path from the user's arguments to the frames.
pub fn relink_encode(session: &mut Session, case: &Case, data: Option<Data>) -> Option<String> {
    let payload = match data {
        Some(data) => Payload::from_data([data]),
        None => {
            let mut payload = Payload::new();
            for arg in &case.args {
                payload.push(arg).ok()?;
            }
            payload
        }
    };
    match case.ack_id {
        Some(id) => session.ack(id, &payload).ok()?,
        None => session.emit(case.event, &payload, None).ok()?,
    }
    let Some(Transmit::Text(text)) = session.poll_transmit() else {
        return None;
    };
    while session.poll_transmit().is_some() {}
    Some(text)
}

/// relink's plain emit, or answer, of `Serialize` arguments: written straight into the
/// frame (what `Client::emit("chat", (args,))` and `Event::ack((args,))` do in the caller's
/// task).
pub fn relink_encode_one_pass(case: &Case) -> Option<String> {
    use relink_proto::IntoArgs;
    let event = match case.ack_id {
        Some(id) => (&case.args[0],).into_ack("/", id).ok()?,
        None => (&case.args[0],).into_event("/", case.event).ok()?,
    };
    Some(event.into_parts().0)
}

/// The floor of decoding: validating the JSON.
pub fn floor_decode(case: &Case) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(case.json()).is_ok()
}

/// The floor of encoding: serializing `["name", args...]` (or the ack's `[args...]`).
pub fn floor_encode(case: &Case) -> Option<String> {
    match case.ack_id {
        Some(_) => serde_json::to_string(&case.args).ok(),
        None => serde_json::to_string(&(case.event, &case.args[0])).ok(),
    }
}

/// The criterion group of one operation on one case.
pub fn group_name(op: &str, case: &Case) -> String {
    format!("codec-{op}-{}", case.name)
}

/// Registers every codec benchmark.
pub fn register(c: &mut Criterion) {
    for case in cases() {
        let mut group = c.benchmark_group(group_name("decode", &case));
        let mut session = connected_session();
        let now = Instant::now();
        group.bench_function("relink", |b| {
            b.iter(|| black_box(relink_decode(&mut session, black_box(&case), now)))
        });
        group.bench_function("serde_json", |b| {
            b.iter(|| black_box(floor_decode(black_box(&case))))
        });
        group.finish();

        let mut group = c.benchmark_group(group_name("encode", &case));
        let mut session = connected_session();
        match &case.data {
            Some(data) => group.bench_function("relink", |b| {
                b.iter_batched(
                    || data.clone(),
                    |data| black_box(relink_encode(&mut session, &case, Some(data))),
                    BatchSize::SmallInput,
                )
            }),
            None => group.bench_function("relink", |b| {
                b.iter(|| black_box(relink_encode(&mut session, black_box(&case), None)))
            }),
        };
        group.bench_function("serde_json", |b| {
            b.iter(|| black_box(floor_encode(black_box(&case))))
        });
        group.finish();
    }
}

/// Criterion settings short enough for the whole run to take a few minutes.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .without_plots()
}
