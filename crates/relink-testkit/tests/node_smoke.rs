//! Smoke test for the Node socket.io server runner.
//!
//! Needs Node.js and `npm ci --prefix interop/node`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use relink_testkit::node::{NodeOptions, NodeServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Plain HTTP/1.1 GET of the Engine.IO polling handshake; returns (status line, body).
async fn polling_handshake(port: u16) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to node server");
    let request = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("HTTP response within 10 s")
        .unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head/body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// Whether a process is gone (absent or a zombie); Linux only, `true` elsewhere.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // state is the field after the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
    }
}

async fn wait_until_gone(port: u16, pid: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let refused = TcpStream::connect(("127.0.0.1", port)).await.is_err();
        if refused && (!cfg!(target_os = "linux") || process_gone(pid)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node server (pid {pid}, port {port}) still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn node_server_handshake_commands_and_drop() {
    let mut server = NodeServer::start(NodeOptions::default()).await.unwrap();
    let port = server.port();
    assert_ne!(port, 0);
    assert_eq!(server.url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(server.options().token, "secret");
    let pid = server.pid().expect("pid");

    let (status, body) = polling_handshake(port).await;
    assert!(status.contains(" 200 "), "status: {status}");
    assert!(body.starts_with("0{\"sid\""), "body: {body}");

    let stats = server.stats().await.unwrap();
    assert_eq!(stats["ok"], true);
    assert_eq!(stats["received"], 0);
    // the handshake above opened one Engine.IO session (not yet timed out)
    assert_eq!(stats["clients"], 1, "stats: {stats}");

    server.disconnect_all().await.unwrap();
    let stats = server.stats().await.unwrap();
    assert_eq!(stats["clients"], 0, "stats: {stats}");

    let reply = server
        .command(serde_json::json!({ "cmd": "no-such-command" }))
        .await
        .unwrap();
    assert_eq!(reply["ok"], false);

    drop(server);
    wait_until_gone(port, pid).await;
}

#[tokio::test]
async fn node_server_restart_same_port_and_stop() {
    let opts = NodeOptions {
        recovery: true,
        ping_interval_ms: Some(1000),
        ping_timeout_ms: Some(500),
        ..NodeOptions::default()
    };
    let mut server = NodeServer::start(opts).await.unwrap();
    let port = server.port();
    let old_pid = server.pid().expect("pid");

    let (_, body) = polling_handshake(port).await;
    assert!(body.starts_with("0{\"sid\""), "body: {body}");
    assert!(body.contains("\"pingInterval\":1000"), "body: {body}");

    server.restart().await.unwrap();
    assert_eq!(server.port(), port);
    let new_pid = server.pid().expect("pid");
    assert_ne!(old_pid, new_pid);
    assert!(process_gone(old_pid) || !cfg!(target_os = "linux"));

    let (_, body) = polling_handshake(port).await;
    assert!(body.starts_with("0{\"sid\""), "body: {body}");

    server.stop().await;
    wait_until_gone(port, new_pid).await;
}
