//! Integration tests for the fault-injecting gateway, against tiny in-test upstreams on loopback.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relink_testkit::gateway::{Gateway, GatewayStats, Mode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// Generous bound for things that must happen.
const LONG: Duration = Duration::from_secs(5);
/// Short bound for things that must *not* happen.
const SHORT: Duration = Duration::from_millis(300);

/// An echo server that also reports every chunk it receives.
struct Echo {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Vec<u8>>,
    conns: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        let conns = Arc::new(AtomicU64::new(0));
        let conns2 = Arc::clone(&conns);
        let task = tokio::spawn(async move {
            let mut set = JoinSet::new();
            while let Ok((mut s, _)) = listener.accept().await {
                conns2.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                set.spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let _ = tx.send(buf[..n].to_vec());
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo {
            addr,
            received,
            conns,
            task,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Poll `f` until it holds, for at most ~5 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn echo_round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    timeout(LONG, s.read_exact(&mut buf))
        .await
        .expect("echo timed out")
        .unwrap();
    assert_eq!(buf, msg);
}

/// Read until EOF (bounded), returning the bytes.
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(LONG, s.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    out
}

/// Assert that the connection gets cut (error or EOF) within the long bound.
async fn assert_cut(s: &mut TcpStream) -> io::Result<usize> {
    let mut buf = [0u8; 64];
    let res = timeout(LONG, s.read(&mut buf))
        .await
        .expect("connection was not cut");
    match &res {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection to be cut, read {n} bytes"),
    }
    res
}

/// Assert that no byte (and no EOF/error) arrives within the short bound.
async fn assert_silent(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match timeout(SHORT, s.read(&mut buf)).await {
        Err(_) => {}
        Ok(r) => panic!("expected silence, got {r:?}"),
    }
}

struct Response {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head");
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("bad header line");
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    Response {
        status_line,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

const WS_UPGRADE: &[u8] = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

async fn http_exchange(gw: &Gateway, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(request).await.unwrap();
    let raw = read_all(&mut s).await;
    parse_response(&raw)
}

fn assert_framing(r: &Response) {
    assert_eq!(r.header("connection"), Some("close"));
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, r.body.len());
}

#[test]
fn gateway_is_send_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Gateway>();
    check::<Arc<Gateway>>();
}

#[tokio::test]
async fn url_and_defaults() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    assert!(gw.addr().ip().is_loopback());
    assert_eq!(gw.url(), format!("http://127.0.0.1:{}", gw.addr().port()));
    assert_eq!(gw.mode(), Mode::Forward);
    assert_eq!(gw.upstream(), echo.addr);
    assert_eq!(gw.stats(), GatewayStats::default());
    gw.shutdown().await;
}

#[tokio::test]
async fn forward_round_trip_and_active_count() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut s, b"hello through the gateway").await;
    echo_round_trip(&mut s, &[7u8; 100_000]).await;

    let st = gw.stats();
    assert_eq!((st.accepted, st.forwarded, st.active), (1, 1, 1));

    // A clean client close closes the upstream side and the connection leaves `active`.
    drop(s);
    eventually("active back to 0", || gw.stats().active == 0).await;
    assert_eq!(echo.conns.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn forward_propagates_half_close() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(b"last words").await.unwrap();
    s.shutdown().await.unwrap();
    // The echo gets our FIN after the data, echoes, then closes: we read everything then EOF.
    assert_eq!(read_all(&mut s).await, b"last words");
    gw.shutdown().await;
}

#[tokio::test]
async fn status_503_with_retry_after() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let mode = Mode::Status {
        code: 503,
        retry_after: Some("7".into()),
    };
    gw.set_mode(mode.clone());
    assert_eq!(gw.mode(), mode);

    let r = http_exchange(&gw, WS_UPGRADE).await;
    assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_framing(&r);
    assert!(String::from_utf8_lossy(&r.body).contains("503"));

    let st = gw.stats();
    assert_eq!((st.accepted, st.status_answers, st.forwarded), (1, 1, 0));
    assert_eq!(
        echo.conns.load(Ordering::SeqCst),
        0,
        "upstream must not be contacted"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn status_answer_waits_for_a_split_request_head() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    gw.set_mode(Mode::Status {
        code: 401,
        retry_after: None,
    });
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let (a, b) = WS_UPGRADE.split_at(WS_UPGRADE.len() - 3);
    s.write_all(a).await.unwrap();
    // The head is incomplete: the gateway must not answer yet.
    assert_silent(&mut s).await;
    s.write_all(b).await.unwrap();
    let r = parse_response(&read_all(&mut s).await);
    assert_eq!(r.status_line, "HTTP/1.1 401 Unauthorized");
    assert_eq!(r.header("retry-after"), None);
    assert_framing(&r);
    gw.shutdown().await;
}

#[tokio::test]
async fn status_403_json_even_with_unread_request_body() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    gw.set_mode(Mode::Status {
        code: 403,
        retry_after: None,
    });
    // A polling POST with a body the gateway never reads as part of the head: the response
    // must still arrive intact (no reset destroying it).
    let body = vec![b'x'; 64 * 1024];
    let mut req = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let (w, raw) = tokio::join!(wr.write_all(&req), async {
        let mut out = Vec::new();
        timeout(LONG, rd.read_to_end(&mut out))
            .await
            .expect("response timed out")
            .map(|_| out)
    });
    w.unwrap();
    let r = parse_response(&raw.unwrap());
    assert_eq!(r.status_line, "HTTP/1.1 403 Forbidden");
    assert_eq!(r.body, br#"{"code":4,"message":"Forbidden"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_framing(&r);
    gw.shutdown().await;
}

#[tokio::test]
async fn blackhole_never_answers_but_stays_open() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    gw.set_mode(Mode::Blackhole);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    s.write_all(WS_UPGRADE).await.unwrap();
    assert_silent(&mut s).await;
    // Still open: more writes are accepted (and swallowed), still no answer.
    s.write_all(b"anyone there?").await.unwrap();
    assert_silent(&mut s).await;

    let st = gw.stats();
    assert_eq!((st.accepted, st.blackholed, st.forwarded), (1, 1, 0));
    assert_eq!(echo.conns.load(Ordering::SeqCst), 0);

    // reset_all releases held blackholed connections too.
    gw.reset_all();
    let res = assert_cut(&mut s).await;
    assert!(res.is_err(), "expected a reset, got {res:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn reset_mode_cuts_immediately() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    gw.set_mode(Mode::Reset);
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    assert!(gw.wait_accepted(1, LONG).await);
    assert_cut(&mut s).await.ok();
    eventually("reset counted", || gw.stats().resets == 1).await;
    let st = gw.stats();
    assert_eq!((st.accepted, st.forwarded, st.active), (1, 0, 0));
    assert_eq!(echo.conns.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn reset_all_cuts_live_forwarded_connections() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let mut a = TcpStream::connect(gw.addr()).await.unwrap();
    let mut b = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut a, b"a").await;
    echo_round_trip(&mut b, b"b").await;
    assert_eq!(gw.stats().active, 2);

    gw.reset_all();
    for s in [&mut a, &mut b] {
        let err = assert_cut(s)
            .await
            .expect_err("expected a TCP reset, got EOF");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
    eventually("active back to 0", || gw.stats().active == 0).await;

    // New connections are unaffected and still follow the mode (Forward).
    let mut c = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut c, b"after the reset").await;
    assert_eq!(gw.stats().forwarded, 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn freeze_all_stops_bytes_without_closing() {
    let mut echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let mut s = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut s, b"before").await;
    assert_eq!(echo.received.recv().await.unwrap(), b"before");

    gw.freeze_all();
    // Writes still succeed (the socket is open) but nothing comes back, no EOF, no reset.
    s.write_all(b"into the void").await.unwrap();
    assert_silent(&mut s).await;
    assert!(
        echo.received.try_recv().is_err(),
        "upstream must not receive bytes after freeze"
    );
    assert_eq!(
        gw.stats().active,
        1,
        "frozen connection still counts as active"
    );

    // New connections are unaffected.
    let mut fresh = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut fresh, b"fresh").await;
    assert_eq!(echo.received.recv().await.unwrap(), b"fresh");

    // Still frozen.
    assert_silent(&mut s).await;
    assert!(echo.received.try_recv().is_err());

    // A reset finally cuts the frozen connection, and only affects already-accepted ones.
    gw.reset_all();
    let err = assert_cut(&mut s).await.expect_err("expected a TCP reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let err = assert_cut(&mut fresh)
        .await
        .expect_err("expected a TCP reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    eventually("active back to 0", || gw.stats().active == 0).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn set_upstream_applies_to_new_connections() {
    let mut one = Echo::start().await;
    let mut two = Echo::start().await;
    let gw = Gateway::start(one.addr).await.unwrap();
    let mut a = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut a, b"to one").await;

    gw.set_upstream(two.addr);
    assert_eq!(gw.upstream(), two.addr);
    let mut b = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut b, b"to two").await;
    // The old connection keeps its upstream.
    echo_round_trip(&mut a, b"still one").await;

    assert_eq!(one.received.recv().await.unwrap(), b"to one");
    assert_eq!(one.received.recv().await.unwrap(), b"still one");
    assert_eq!(two.received.recv().await.unwrap(), b"to two");
    assert_eq!(one.conns.load(Ordering::SeqCst), 1);
    assert_eq!(two.conns.load(Ordering::SeqCst), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_answers_502() {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let gw = Gateway::start(dead).await.unwrap();
    let r = http_exchange(&gw, WS_UPGRADE).await;
    assert_eq!(r.status_line, "HTTP/1.1 502 Bad Gateway");
    assert_framing(&r);
    let st = gw.stats();
    assert_eq!(
        (st.accepted, st.upstream_failures, st.forwarded, st.active),
        (1, 1, 0, 0)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn counters_and_wait_accepted() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    assert!(gw.wait_accepted(0, Duration::ZERO).await);
    assert!(!gw.wait_accepted(1, Duration::from_millis(50)).await);

    let mut fwd = TcpStream::connect(gw.addr()).await.unwrap();
    echo_round_trip(&mut fwd, b"x").await;

    gw.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let r = http_exchange(&gw, WS_UPGRADE).await;
    assert!(r.status_line.starts_with("HTTP/1.1 503"));

    gw.set_mode(Mode::Blackhole);
    let _held = TcpStream::connect(gw.addr()).await.unwrap();
    assert!(gw.wait_accepted(3, LONG).await);

    gw.set_mode(Mode::Reset);
    let mut reset = TcpStream::connect(gw.addr()).await.unwrap();
    assert!(gw.wait_accepted(4, LONG).await);
    assert_cut(&mut reset).await.ok();

    eventually("all treatments counted", || {
        let st = gw.stats();
        st.blackholed == 1 && st.resets == 1
    })
    .await;
    let st = gw.stats();
    assert_eq!(st.accepted, 4);
    assert_eq!(st.forwarded, 1);
    assert_eq!(st.status_answers, 1);
    assert_eq!(st.blackholed, 1);
    assert_eq!(st.resets, 1);
    assert_eq!(st.upstream_failures, 0);
    assert_eq!(st.active, 1);
    assert!(!gw.wait_accepted(5, Duration::from_millis(50)).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn wait_accepted_wakes_on_accept() {
    let echo = Echo::start().await;
    let gw = Arc::new(Gateway::start(echo.addr).await.unwrap());
    let waiter = {
        let gw = Arc::clone(&gw);
        tokio::spawn(async move { gw.wait_accepted(2, LONG).await })
    };
    let _a = TcpStream::connect(gw.addr()).await.unwrap();
    let _b = TcpStream::connect(gw.addr()).await.unwrap();
    assert!(timeout(LONG, waiter).await.unwrap().unwrap());
}

#[tokio::test]
async fn shutdown_closes_connections_and_stops_accepting() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let addr = gw.addr();
    let mut live = TcpStream::connect(addr).await.unwrap();
    echo_round_trip(&mut live, b"live").await;
    gw.set_mode(Mode::Blackhole);
    let mut held = TcpStream::connect(addr).await.unwrap();
    assert!(gw.wait_accepted(2, LONG).await);

    timeout(LONG, gw.shutdown()).await.expect("shutdown hung");

    assert_cut(&mut live).await.ok();
    assert_cut(&mut held).await.ok();
    let err = TcpStream::connect(addr)
        .await
        .expect_err("gateway still accepting after shutdown");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn drop_stops_everything() {
    let echo = Echo::start().await;
    let gw = Gateway::start(echo.addr).await.unwrap();
    let addr = gw.addr();
    let mut live = TcpStream::connect(addr).await.unwrap();
    echo_round_trip(&mut live, b"live").await;
    gw.freeze_all();
    drop(gw);
    // Even a frozen connection is released once the gateway is gone.
    assert_cut(&mut live).await.ok();
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "gateway still accepting after drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let echo = Echo::start().await;
    let gw = Arc::new(Gateway::start(echo.addr).await.unwrap());
    let mut set = JoinSet::new();
    for i in 0..32u32 {
        let addr = gw.addr();
        set.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for j in 0..10u32 {
                echo_round_trip(&mut s, format!("conn {i} msg {j}").as_bytes()).await;
            }
        });
    }
    while let Some(r) = timeout(LONG, set.join_next()).await.expect("clients hung") {
        r.unwrap();
    }
    eventually("all closed", || gw.stats().active == 0).await;
    assert_eq!(gw.stats().forwarded, 32);
}
