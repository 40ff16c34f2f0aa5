use super::*;
use std::time::Duration;

const OPEN: &str =
    r#"0{"sid":"e1","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":100}"#;

fn texts(session: &mut Session) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(t) = session.poll_transmit() {
        match t {
            Transmit::Text(s) => out.push(s),
            Transmit::Binary(b) => out.push(format!("<{} bytes>", b.len())),
        }
    }
    out
}

fn events(session: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn connected(config: SessionConfig, t0: Instant) -> Session {
    let mut s = Session::new(config);
    s.handle_text(OPEN, t0).expect("open");
    s.handle_text(r#"40{"sid":"s1"}"#, t0).expect("connect");
    texts(&mut s);
    events(&mut s);
    s
}

#[test]
fn handshake_sends_connect_with_auth_and_reports_connected() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig {
        namespace: "/admin".into(),
        auth: Some(r#"{"token":"t"}"#.into()),
        ..SessionConfig::default()
    });
    assert_eq!(s.state(), SessionState::AwaitOpen);
    assert_eq!(s.poll_timeout(), None, "no heartbeat before OPEN");
    s.handle_text(OPEN, t0).expect("open");
    assert_eq!(texts(&mut s), vec![r#"40/admin,{"token":"t"}"#.to_string()]);
    assert_eq!(s.state(), SessionState::AwaitConnect);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    s.handle_text(r#"40/admin,{"sid":"s1","pid":"p1"}"#, t0)
        .expect("connect");
    let ev = events(&mut s);
    assert!(matches!(ev[0], SessionEvent::Opened(_)));
    assert_eq!(
        ev[1],
        SessionEvent::Connected {
            sid: "s1".into(),
            pid: Some("p1".into())
        }
    );
    assert_eq!(s.state(), SessionState::Connected);
}

#[test]
fn answers_pings_and_moves_the_heartbeat_deadline() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    let t1 = t0 + Duration::from_millis(250);
    s.handle_text("2", t1).expect("ping");
    assert_eq!(texts(&mut s), vec!["3".to_string()]);
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_millis(500)));
    s.handle_timeout(t1 + Duration::from_millis(499));
    assert_eq!(s.state(), SessionState::Connected);
    s.handle_timeout(t1 + Duration::from_millis(500));
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Closed(CloseReason::PingTimeout)]
    );
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn events_and_acks_both_ways() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text(r#"426["ask",{"q":1}]"#, t0).expect("event");
    let ev = events(&mut s);
    let SessionEvent::Event {
        name,
        args,
        ack_id,
        offset,
    } = &ev[0]
    else {
        panic!("event expected: {ev:?}")
    };
    assert_eq!(
        (&**name, args.as_json(), *ack_id, offset),
        ("ask", r#"[{"q":1}]"#, Some(6), &None)
    );
    s.ack(6, &Payload::json("yes").expect("json")).expect("ack");
    s.emit("echo", &Payload::json("plain").expect("json"), Some(1))
        .expect("emit");
    assert_eq!(
        texts(&mut s),
        vec![
            r#"436["yes"]"#.to_string(),
            r#"421["echo","plain"]"#.to_string()
        ]
    );
    s.handle_text(r#"431[{"echoed":"plain"}]"#, t0)
        .expect("ack");
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Ack {
            id: 1,
            args: Payload::from_json_array(r#"[{"echoed":"plain"}]"#, vec![]).expect("valid")
        }]
    );
}

#[test]
fn binary_events_are_reassembled_and_sent_with_attachments() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text(
        r#"452-["bin",{"_placeholder":true,"num":0},{"deep":[{"_placeholder":true,"num":1}]}]"#,
        t0,
    )
    .expect("header");
    assert!(events(&mut s).is_empty(), "waits for attachments");
    s.handle_binary(Bytes::from_static(b"one"), t0)
        .expect("first");
    s.handle_binary(Bytes::from_static(b"two"), t0)
        .expect("second");
    let ev = events(&mut s);
    let SessionEvent::Event { args, .. } = &ev[0] else {
        panic!("event expected")
    };
    let data = args.to_data().expect("reassembles");
    assert_eq!(data[0].as_binary().map(|b| &b[..]), Some(&b"one"[..]));
    let mut p = Payload::new();
    p.push_binary(vec![1u8, 2, 3]);
    s.emit("up", &p, None).expect("emit");
    assert_eq!(
        texts(&mut s),
        vec![
            r#"451-["up",{"_placeholder":true,"num":0}]"#.to_string(),
            "<3 bytes>".to_string()
        ]
    );
}

#[test]
fn zero_attachment_binary_packets_complete_at_once() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text(r#"450-["b"]"#, t0).expect("event");
    assert_eq!(events(&mut s).len(), 1);
}

#[test]
fn connect_error_closes_with_message_and_data() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    s.handle_text(OPEN, t0).expect("open");
    s.handle_text(
        r#"44{"message":"unauthorized","data":{"reason":"empty token"}}"#,
        t0,
    )
    .expect("connect error");
    let ev = events(&mut s);
    assert_eq!(
        ev[1],
        SessionEvent::Closed(CloseReason::ConnectError {
            message: "unauthorized".into(),
            data: Some(r#"{"reason":"empty token"}"#.into())
        })
    );
    assert_eq!(s.state(), SessionState::Closed);
}

#[test]
fn server_disconnect_and_engine_close_have_distinct_reasons() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text("41", t0).expect("disconnect");
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Closed(CloseReason::ServerDisconnect)]
    );
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text("1", t0).expect("close");
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Closed(CloseReason::EngineClose)]
    );
}

#[test]
fn other_namespaces_are_ignored() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text(r#"42/other,["x"]"#, t0).expect("ignored");
    s.handle_text("41/other,", t0).expect("ignored");
    assert!(events(&mut s).is_empty());
    assert_eq!(s.state(), SessionState::Connected);
}

#[test]
fn another_namespaces_attachments_are_skipped_not_taken_for_ours() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text(
        r#"452-/other,["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        t0,
    )
    .expect("another namespace's binary event");
    for _ in 0..2 {
        s.handle_binary(Bytes::from_static(b"\x01\x02"), t0)
            .expect("its attachments are skipped");
    }
    s.handle_text(r#"42["ours",1]"#, t0).expect("ours still");
    let ev = events(&mut s);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        matches!(&ev[0], SessionEvent::Event { name, .. } if &**name == "ours"),
        "{ev:?}"
    );
    assert_eq!(s.state(), SessionState::Connected);
    // Its count is bounded like ours: a hostile count is hostile in any namespace.
    let mut s = connected(SessionConfig::default(), t0);
    let hostile = format!(r#"45{}-/other,["x"]"#, DEFAULT_MAX_ATTACHMENTS + 1);
    assert!(s.handle_text(&hostile, t0).is_err());
}

#[test]
fn a_packets_bytes_attachments_included_are_bounded() {
    let t0 = Instant::now();
    let config = SessionConfig {
        max_packet_bytes: 200,
        ..SessionConfig::default()
    };
    // A text of about 100 bytes and three attachments of 40: the third goes past 200.
    for namespace in ["", "/other,"] {
        let mut s = connected(config.clone(), t0);
        let header = format!(
            r#"453-{namespace}["x",{{"_placeholder":true,"num":0}},{{"_placeholder":true,"num":1}},{{"_placeholder":true,"num":2}}]"#
        );
        s.handle_text(&header, t0).expect("the text alone fits");
        for _ in 0..2 {
            s.handle_binary(Bytes::from(vec![0u8; 40]), t0)
                .expect("two attachments fit");
        }
        let e = s
            .handle_binary(Bytes::from(vec![0u8; 40]), t0)
            .expect_err("the packet grew past the bound");
        assert!(
            matches!(e, ProtocolError::PacketTooLarge { limit: 200, .. }),
            "{namespace}: {e:?}"
        );
        assert_eq!(s.state(), SessionState::Closed);
    }
    // Within the bound, nothing changes.
    let mut s = connected(config, t0);
    s.handle_text(r#"451-["x",{"_placeholder":true,"num":0}]"#, t0)
        .expect("fits");
    s.handle_binary(Bytes::from(vec![0u8; 40]), t0)
        .expect("fits");
    assert_eq!(events(&mut s).len(), 1);
}

#[test]
fn events_held_before_the_connect_reply_are_bounded_in_bytes() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig {
        max_early_bytes: 64,
        ..SessionConfig::default()
    });
    s.handle_text(OPEN, t0).expect("open");
    // 4 events of 20 bytes of arguments: the 4th goes past 64.
    let event = format!(r#"42["e","{}"]"#, "x".repeat(14));
    for _ in 0..3 {
        s.handle_text(&event, t0).expect("held");
    }
    let e = s.handle_text(&event, t0).expect_err("past the bound");
    assert!(
        matches!(e, ProtocolError::Unexpected(what, _) if what.contains("bytes")),
        "{e:?}"
    );
}

#[test]
fn a_connect_error_after_the_namespace_accepted_is_a_protocol_error() {
    // Not a rejection of credentials (those come before the CONNECT reply): taking it for
    // one would have the client retry at once, every time.
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    let e = s
        .handle_text(r#"44{"message":"unauthorized"}"#, t0)
        .expect_err("a protocol error");
    assert!(
        matches!(e, ProtocolError::Unexpected("CONNECT_ERROR", _)),
        "{e:?}"
    );
    assert_eq!(s.state(), SessionState::Closed);
    assert!(
        !events(&mut s)
            .iter()
            .any(|e| matches!(e, SessionEvent::Closed(CloseReason::ConnectError { .. }))),
        "not reported as a rejection"
    );
}

#[test]
fn recovery_sends_pid_and_offset_and_strips_offsets() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig {
        auth: Some(r#"{"token":"t"}"#.into()),
        recovery: Some(Recovery {
            pid: "p1".into(),
            offset: "o5".into(),
        }),
        ..SessionConfig::default()
    });
    s.handle_text(OPEN, t0).expect("open");
    assert_eq!(
        texts(&mut s),
        vec![r#"40{"offset":"o5","pid":"p1","token":"t"}"#.to_string()]
    );
    // Missed packets are replayed before the CONNECT reply.
    s.handle_text(r#"42["tick",6,"o6"]"#, t0).expect("replayed");
    s.handle_text(r#"40{"sid":"s1","pid":"p1"}"#, t0)
        .expect("connect");
    s.handle_text(r#"42["tick",7,"o7"]"#, t0).expect("live");
    s.handle_text(r#"423["asks",1]"#, t0)
        .expect("with ack: no offset");
    let ev = events(&mut s);
    assert!(matches!(ev[1], SessionEvent::Connected { .. }), "{ev:?}");
    let got: Vec<(String, Option<String>)> = ev[2..]
        .iter()
        .map(|e| match e {
            SessionEvent::Event { args, offset, .. } => {
                (args.as_json().to_string(), offset.clone())
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("[6]".to_string(), Some("o6".to_string())),
            ("[7]".to_string(), Some("o7".to_string())),
            ("[1]".to_string(), None),
        ]
    );
}

#[test]
fn without_pid_string_arguments_are_left_alone() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    s.handle_text(r#"42["msg","hello"]"#, t0).expect("event");
    let ev = events(&mut s);
    assert!(
        matches!(&ev[0], SessionEvent::Event { args, offset: None, .. } if args.as_json() == r#"["hello"]"#)
    );
}

#[test]
fn protocol_violations_are_errors_and_close_the_session() {
    let t0 = Instant::now();
    type Step = Box<dyn Fn(&mut Session) -> Result<(), ProtocolError>>;
    let cases: Vec<(Step, &str)> = vec![
        (
            Box::new(move |s| s.handle_binary(Bytes::from_static(b"x"), t0)),
            "stray binary",
        ),
        (Box::new(move |s| s.handle_text(OPEN, t0)), "second open"),
        (Box::new(move |s| s.handle_text("9", t0)), "bad engine type"),
        (Box::new(move |s| s.handle_text("4{", t0)), "bad packet"),
        (
            Box::new(move |s| s.handle_text(r#"40{"sid":"again"}"#, t0)),
            "second connect",
        ),
        (
            Box::new(move |s| s.handle_text(r#"40{"nosid":1}"#, t0)),
            "connect without sid",
        ),
        (
            Box::new(move |s| {
                s.handle_text(r#"451-["b",{"_placeholder":true,"num":0}]"#, t0)?;
                s.handle_text("2", t0)
            }),
            "text while attachments due",
        ),
        (
            Box::new(move |s| s.handle_text(r#"45999-["b"]"#, t0)),
            "too many attachments",
        ),
    ];
    for (step, what) in cases {
        let mut s = connected(SessionConfig::default(), t0);
        assert!(step(&mut s).is_err(), "{what}");
        assert_eq!(s.state(), SessionState::Closed, "{what}");
    }
    let mut fresh = Session::new(SessionConfig::default());
    assert!(fresh.handle_text("2", t0).is_err(), "ping before open");
}

#[test]
fn emits_need_a_connection_and_respect_max_payload() {
    let t0 = Instant::now();
    let mut s = Session::new(SessionConfig::default());
    assert_eq!(
        s.emit("e", &Payload::new(), None),
        Err(SendError::NotConnected)
    );
    let mut s = connected(SessionConfig::default(), t0);
    let big = Payload::json(&"x".repeat(200)).expect("json");
    assert!(matches!(
        s.emit("e", &big, None),
        Err(SendError::TooLarge { max: 100, .. })
    ));
    assert!(
        texts(&mut s).is_empty(),
        "nothing queued for a rejected emit"
    );
}

#[test]
fn over_polling_an_attachment_must_fit_max_payload_as_base64() {
    // OPEN says maxPayload 100: 90 bytes fit raw, not as the 122 of base64.
    let t0 = Instant::now();
    let blob = Payload::from_data([crate::binary::Data::from(vec![1u8; 90])]);
    let mut ws = connected(SessionConfig::default(), t0);
    assert_eq!(ws.emit("e", &blob, None), Ok(()));
    let mut polling = connected(
        SessionConfig {
            base64_attachments: true,
            ..SessionConfig::default()
        },
        t0,
    );
    assert!(matches!(
        polling.emit("e", &blob, None),
        Err(SendError::TooLarge {
            size: 122,
            max: 100
        })
    ));
    let fits = Payload::from_data([crate::binary::Data::from(vec![1u8; 70])]);
    assert_eq!(polling.emit("e", &fits, None), Ok(()));
}

#[test]
fn encoded_events_are_sent_as_encoded_or_handed_back() {
    let t0 = Instant::now();
    let config = SessionConfig {
        namespace: "/chat".into(),
        ..SessionConfig::default()
    };
    let mut args = Payload::json(&1).expect("json");
    args.push_binary(vec![7u8; 3]);
    let event = EncodedEvent::new("/chat", "e", &args);
    assert_eq!(
        event.text(),
        r#"451-/chat,["e",1,{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(event.size(), event.text().len() + 3);

    let mut s = Session::new(config.clone());
    let back = s.send_encoded(event.clone()).expect_err("not connected");
    assert_eq!(*back, (SendError::NotConnected, event.clone()));

    s.handle_text(OPEN, t0).expect("open");
    s.handle_text(r#"40/chat,{"sid":"s1"}"#, t0)
        .expect("connect");
    texts(&mut s);
    s.send_encoded(event.clone()).expect("connected");
    assert_eq!(
        texts(&mut s),
        vec![event.text().to_string(), "<3 bytes>".into()]
    );

    let big = EncodedEvent::new(
        "/chat",
        "e",
        &Payload::json(&"x".repeat(200)).expect("json"),
    );
    let back = s.send_encoded(big.clone()).expect_err("over maxPayload");
    assert!(matches!(back.0, SendError::TooLarge { max: 100, .. }));
    assert_eq!(back.1, big, "handed back whole");
    assert!(texts(&mut s).is_empty());
}

#[test]
fn client_disconnect_sends_disconnect_packet() {
    let t0 = Instant::now();
    let mut s2 = Session::new(SessionConfig {
        namespace: "/admin".into(),
        ..SessionConfig::default()
    });
    s2.handle_text(OPEN, t0).expect("open");
    s2.handle_text(r#"40/admin,{"sid":"a"}"#, t0)
        .expect("connect");
    texts(&mut s2);
    events(&mut s2);
    s2.disconnect();
    assert_eq!(texts(&mut s2), vec!["41/admin,".to_string()]);
    assert_eq!(
        events(&mut s2),
        vec![SessionEvent::Closed(CloseReason::ClientDisconnect)]
    );
    assert_eq!(s2.state(), SessionState::Closed);
}

#[test]
fn events_of_the_same_name_share_it_and_new_names_stay_bounded() {
    let t0 = Instant::now();
    let mut s = connected(SessionConfig::default(), t0);
    for frame in [
        r#"42["tick",1]"#,
        r#"451-["tick",{"_placeholder":true,"num":0}]"#,
    ] {
        s.handle_text(frame, t0).expect("event");
    }
    s.handle_binary(Bytes::from_static(b"x"), t0)
        .expect("attachment");
    s.handle_text(r#"42["tick",2]"#, t0).expect("event");
    let names: Vec<Arc<str>> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            SessionEvent::Event { name, .. } => name,
            other => panic!("event expected: {other:?}"),
        })
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.iter().all(|n| &**n == "tick"));
    assert!(Arc::ptr_eq(&names[0], &names[1]) && Arc::ptr_eq(&names[0], &names[2]));
    // A peer sending ever new names: each gets its own, the cache keeps a bounded few.
    for i in 0..100 {
        s.handle_text(&format!(r#"42["n{i}"]"#), t0).expect("event");
    }
    let names: Vec<String> = events(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Event { name, .. } => Some(name.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(names, (0..100).map(|i| format!("n{i}")).collect::<Vec<_>>());
    assert_eq!(s.names.recent.len(), RECENT_NAMES);
    // Long names are handed out but not kept.
    let long = "x".repeat(LONGEST_KEPT_NAME + 1);
    s.handle_text(&format!(r#"42["{long}"]"#), t0)
        .expect("event");
    assert!(matches!(&events(&mut s)[0], SessionEvent::Event { name, .. } if **name == *long));
    assert!(s.names.recent.iter().all(|n| n.len() <= LONGEST_KEPT_NAME));
}
