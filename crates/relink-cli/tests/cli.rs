//! The `relink` binary's contract, end to end: NDJSON output, stdin emits, token sources,
//! log formats, exit codes, help text, and the token never showing up in any output.
//!
//! Every test spawns the real binary (`CARGO_BIN_EXE_relink`) with piped stdio; the child is
//! killed on drop, and every read is bounded by a timeout so a broken binary fails the test
//! instead of hanging it.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use relink_testkit::gateway::{Gateway, Mode};
use relink_testkit::node::{NodeOptions, NodeServer};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use support::{pump, relink_command, unique_path};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound for any single wait (a line, an exit). A bound, not a timing assertion.
const WAIT: Duration = Duration::from_secs(30);

/// How soon a process must end once it has every reason to (a signal, a closed stdout): a
/// bound, generous for a loaded machine, far below "never".
const PROMPT: Duration = Duration::from_secs(10);

/// A token the Node server rejects (its default accepted token is "secret") or, when the
/// server is started with it, accepts; distinctive enough to grep every output for.
const DISTINCT_TOKEN: &str = "tok-SECRET-4f1c";

// ---------------------------------------------------------------------------------------
// harness

/// A running `relink` process. Stdout and stderr are drained by background tasks into
/// channels (so a chatty child never blocks on a full pipe); the child is killed on drop.
struct Relink {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
    /// Every line read so far, for failure messages and the final checks.
    out_seen: Vec<String>,
    err_seen: Vec<String>,
}

/// What a finished process printed, and how it ended.
struct Finished {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

impl Finished {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// A command line for the binary with a clean, isolated environment: no inherited token,
/// log filter or stored session.
fn relink(args: &[&str]) -> Command {
    relink_command(args, &unique_path("no-session"))
}

/// [`relink`] with the token `secret` in `RELINK_TOKEN`.
fn relink_with_token(args: &[&str]) -> Command {
    let mut cmd = relink(args);
    cmd.env("RELINK_TOKEN", "secret");
    cmd
}

impl Relink {
    fn spawn(mut cmd: Command, what: impl Into<String>) -> Relink {
        let what = what.into();
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdin = child.stdin.take();
        let out = pump(child.stdout.take().unwrap());
        let err = pump(child.stderr.take().unwrap());
        Relink {
            what,
            child,
            stdin,
            out,
            err,
            out_seen: Vec::new(),
            err_seen: Vec::new(),
        }
    }

    fn context(&self) -> String {
        format!(
            "{}\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
            self.what,
            self.out_seen.join("\n"),
            self.err_seen.join("\n")
        )
    }

    /// The next stdout line; panics on EOF or after [`WAIT`].
    async fn next_out(&mut self) -> String {
        match timeout(WAIT, self.out.recv()).await {
            Ok(Some(line)) => {
                self.out_seen.push(line.clone());
                line
            }
            Ok(None) => {
                self.drain_err().await;
                panic!("stdout closed early: {}", self.context())
            }
            Err(_) => panic!("no stdout line within {WAIT:?}: {}", self.context()),
        }
    }

    /// The next stdout line, parsed as JSON; panics if it is not JSON with a `type`.
    async fn next_json(&mut self) -> Value {
        let line = self.next_out().await;
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert!(
            value.get("type").and_then(Value::as_str).is_some(),
            "stdout line without a string `type`: {line}"
        );
        value
    }

    /// Reads stdout until a JSON line matches `pred`, returning it.
    async fn json_until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        for _ in 0..1000 {
            let value = self.next_json().await;
            if pred(&value) {
                return value;
            }
        }
        panic!("no matching stdout line in 1000 lines: {}", self.context())
    }

    /// The next stderr line; panics on EOF or after [`WAIT`].
    async fn next_err(&mut self) -> String {
        match timeout(WAIT, self.err.recv()).await {
            Ok(Some(line)) => {
                self.err_seen.push(line.clone());
                line
            }
            Ok(None) => panic!("stderr closed early: {}", self.context()),
            Err(_) => panic!("no stderr line within {WAIT:?}: {}", self.context()),
        }
    }

    /// Reads stderr until a line matches `pred`, returning it.
    async fn err_until(&mut self, mut pred: impl FnMut(&str) -> bool) -> String {
        for _ in 0..1000 {
            let line = self.next_err().await;
            if pred(&line) {
                return line;
            }
        }
        panic!("no matching stderr line in 1000 lines: {}", self.context())
    }

    async fn drain_err(&mut self) {
        while let Ok(Some(line)) = timeout(WAIT, self.err.recv()).await {
            self.err_seen.push(line);
        }
    }

    async fn write_stdin(&mut self, line: &str) {
        self.write_stdin_bytes(line.as_bytes()).await;
    }

    async fn write_stdin_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("spawned with a piped stdin");
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Like [`Relink::spawn`], but stdout is a pipe the test reads when (and if) it chooses;
    /// [`Relink::next_out`] is not for such a process.
    fn spawn_holding_stdout(mut cmd: Command, what: impl Into<String>) -> (Relink, HeldStdout) {
        let what = what.into();
        let (write_end, reader) = tokio::net::unix::pipe::pipe().unwrap();
        let write_end = write_end.into_blocking_fd().unwrap();
        let probe = write_end.try_clone().unwrap();
        cmd.stdout(Stdio::from(write_end));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        // The command keeps its copy of the write end until dropped.
        drop(cmd);
        let err = pump(child.stderr.take().unwrap());
        let (_, out) = mpsc::unbounded_channel();
        let relink = Relink {
            what,
            stdin: child.stdin.take(),
            child,
            out,
            err,
            out_seen: Vec::new(),
            err_seen: Vec::new(),
        };
        (relink, HeldStdout { reader, probe })
    }

    /// Waits at most [`PROMPT`] for the process to end by itself (killing it otherwise), then
    /// collects stderr.
    async fn exits_within_prompt(mut self, why: &str) -> Finished {
        if timeout(PROMPT, self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
            self.drain_err().await;
            panic!("still running {PROMPT:?} after {why}: {}", self.context());
        }
        self.exit().await
    }

    /// Sends SIGTERM (through `kill(1)`, no libc needed).
    fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends `SIG<name>` through `kill(1)`.
    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("child still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{name} {pid} failed: {status}");
    }

    /// Waits for the exit (killing the child after [`WAIT`]) and collects all output.
    async fn finish(mut self) -> Finished {
        self.stdin = None;
        self.exit().await
    }

    /// [`Relink::finish`] with stdin left open until the process is gone: a process that
    /// needs stdin closed to exit fails here.
    async fn exit(mut self) -> Finished {
        let status = match timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("did not exit within {WAIT:?}: {}", self.context());
            }
        };
        // The pipes reach EOF once the process is gone; each read is still bounded.
        while let Ok(Some(line)) = timeout(WAIT, self.out.recv()).await {
            self.out_seen.push(line);
        }
        self.drain_err().await;
        Finished {
            status,
            stdout: std::mem::take(&mut self.out_seen),
            stderr: std::mem::take(&mut self.err_seen),
        }
    }
}

/// Runs the binary to completion with a null stdin.
async fn run(cmd: Command, what: &str) -> Finished {
    Relink::spawn(cmd, what).finish().await
}

/// A temp file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn with(tag: &str, contents: &str) -> TempFile {
        let path = unique_path(tag);
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn node() -> NodeServer {
    node_with(NodeOptions::default()).await
}

async fn node_with(opts: NodeOptions) -> NodeServer {
    NodeServer::start(opts)
        .await
        .expect("start the Node server (npm ci --prefix interop/node)")
}

/// A gateway whose upstream is never used: it answers every connection itself, so it
/// only counts who came.
async fn counting_gateway() -> Gateway {
    let gateway = Gateway::start("127.0.0.1:1".parse().unwrap())
        .await
        .unwrap();
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    gateway
}

/// Proves that nobody connected to `gateway` so far, without sleeping: connect once
/// ourselves, wait until that connection is accepted, and check it is the first one (the
/// gateway accepts in order, so an earlier connection would have been counted first).
async fn assert_never_dialled(gateway: &Gateway, what: &str) {
    let probe = tokio::net::TcpStream::connect(gateway.addr())
        .await
        .unwrap();
    assert!(
        gateway.wait_accepted(1, WAIT).await,
        "gateway never accepted the probe"
    );
    drop(probe);
    assert_eq!(
        gateway.stats().accepted,
        1,
        "{what}: the CLI dialled the server although it should have stopped before any network attempt"
    );
}

fn status_of(v: &Value) -> Option<&str> {
    (v["type"] == "state")
        .then(|| v["status"].as_str())
        .flatten()
}

/// Reads `listen --json` output up to the welcome event, checking the documented order:
/// `connecting` first, then (after more `connecting` lines at most) `connected` with
/// `recovered: false`, then the `welcome` event with one object argument.
async fn expect_connected_and_welcome(p: &mut Relink) {
    let first = p.next_json().await;
    assert_eq!(first["type"], "state", "first line: {first}");
    assert_eq!(status_of(&first), Some("connecting"), "first line: {first}");
    let connected = p
        .json_until(|v| {
            assert_eq!(v["type"], "state", "no event before connected: {v}");
            let status = status_of(v);
            assert!(
                matches!(status, Some("connecting" | "connected")),
                "only connecting lines before connected: {v}"
            );
            status == Some("connected")
        })
        .await;
    assert_eq!(connected["recovered"], Value::Bool(false), "{connected}");
    let welcome = p.json_until(|v| v["type"] == "event").await;
    assert_eq!(welcome["name"], "welcome", "{welcome}");
    let args = welcome["args"].as_array().expect("args is an array");
    assert_eq!(args.len(), 1, "{welcome}");
    assert!(args[0].is_object(), "{welcome}");
}

/// Every stdout line of a `--json` run is a JSON object with a `type`.
fn assert_all_ndjson(lines: &[String]) {
    for line in lines {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert!(
            value.get("type").and_then(Value::as_str).is_some(),
            "stdout line without a `type`: {line}"
        );
    }
}

fn assert_usage_error(done: &Finished, what: &str, needle: &str) {
    assert_eq!(
        done.code(),
        Some(2),
        "{what}: exit code (stderr: {:?})",
        done.stderr
    );
    let lines: Vec<&String> = done
        .stderr
        .iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: one stderr line expected, got {:?}",
        done.stderr
    );
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{what}: stderr should name the problem ({needle}): {:?}",
        lines[0]
    );
    assert!(done.stdout.is_empty(), "{what}: stdout {:?}", done.stdout);
}

// ---------------------------------------------------------------------------------------
// listen

#[tokio::test]
async fn listen_json_prints_states_then_welcome_and_sigterm_exits_0() {
    let server = node().await;
    let cmd = relink_with_token(&["listen", &server.url(), "--json"]);
    let mut p = Relink::spawn(cmd, "relink listen --json");
    expect_connected_and_welcome(&mut p).await;
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(
        done.code(),
        Some(0),
        "SIGTERM is a clean end: {:?}",
        done.stderr
    );
    assert_all_ndjson(&done.stdout);
}

#[tokio::test]
async fn listen_stdin_emits_lines_and_ignores_invalid_ones() {
    let server = node().await;
    let mut cmd = relink(&["listen", &server.url(), "--json", "--stdin"]);
    cmd.env("RELINK_TOKEN", "secret").stdin(Stdio::piped());
    let mut p = Relink::spawn(cmd, "relink listen --json --stdin");
    expect_connected_and_welcome(&mut p).await;

    p.write_stdin("not json\n").await;
    // A WARN record about the ignored stdin line (other log lines may come first).
    p.err_until(|l| l.contains("WARN") && l.contains("stdin"))
        .await;

    // Still running: a valid line after the invalid one is emitted and echoed back.
    p.write_stdin("[\"echo\",\"hi\"]\n").await;
    let echo = p.json_until(|v| v["type"] == "event").await;
    assert_eq!(
        echo,
        serde_json::json!({"type": "event", "name": "echo", "args": ["hi"]})
    );

    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_all_ndjson(&done.stdout);
}

#[tokio::test]
async fn listen_reads_the_token_from_token_file() {
    let server = node().await;
    let file = TempFile::with("token", "secret\n");
    let cmd = relink(&[
        "listen",
        &server.url(),
        "--json",
        "--token-file",
        file.path(),
    ]);
    let mut p = Relink::spawn(cmd, "relink listen --token-file");
    expect_connected_and_welcome(&mut p).await;
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
}

#[tokio::test]
async fn a_token_file_that_is_a_pipe_is_read_once() {
    let server = node().await;
    let mut cmd = relink(&[
        "emit",
        &server.url(),
        "echo",
        "\"piped\"",
        "--ack",
        "--token-file",
        "/dev/stdin",
    ]);
    cmd.stdin(Stdio::piped());
    let mut p = Relink::spawn(cmd, "relink emit --token-file /dev/stdin");
    p.write_stdin("secret\n").await;
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, vec![r#"["piped"]"#.to_owned()]);
}

#[tokio::test]
async fn log_format_json_makes_every_stderr_line_a_json_object_with_a_level() {
    let gateway = counting_gateway().await;
    let url = gateway.url();
    let cmd = relink_with_token(&[
        "listen",
        &url,
        "--log-format",
        "json",
        "--backoff-initial",
        "10ms",
        "--backoff-max",
        "20ms",
    ]);
    let mut p = Relink::spawn(cmd, "relink listen --log-format json (503 gateway)");
    let mut levels = Vec::new();
    for _ in 0..3 {
        let line = p.next_err().await;
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}"));
        let level = value
            .get("level")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("stderr line without a `level`: {line}"));
        levels.push(level.to_owned());
    }
    assert!(
        levels.iter().any(|l| l == "WARN"),
        "failed attempts are logged as warnings: {levels:?}"
    );
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    for line in &done.stderr {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line:?}"));
        assert!(value.is_object(), "{line}");
        assert!(value.get("level").is_some(), "no `level`: {line}");
    }
}

/// The stderr lines at WARN that contain `needle`, waited for one by one.
async fn expect_warn(p: &mut Relink, needle: &str) -> String {
    p.err_until(|l| l.contains("WARN") && l.contains(needle))
        .await
}

#[tokio::test]
async fn sigterm_and_sigint_end_listen_stdin_while_stdin_stays_open() {
    let server = node().await;
    for signal in ["TERM", "INT"] {
        let mut cmd = relink_with_token(&["listen", &server.url(), "--json", "--stdin"]);
        cmd.stdin(Stdio::piped());
        let what = format!("relink listen --stdin, SIG{signal} with stdin open");
        let mut p = Relink::spawn(cmd, &what);
        expect_connected_and_welcome(&mut p).await;
        p.write_stdin("[\"echo\",\"before\"]\n").await;
        p.json_until(|v| v["type"] == "event" && v["name"] == "echo")
            .await;
        p.signal(signal);
        // `exit`, not `finish`: stdin stays open, as a FIFO held by another process would.
        let done = p.exit().await;
        assert_eq!(done.code(), Some(0), "{what}: stderr {:?}", done.stderr);
        assert_all_ndjson(&done.stdout);
    }
}

#[tokio::test]
async fn every_mode_exits_0_on_a_signal_as_soon_as_its_first_line_appears() {
    // Against a gateway answering 503: `listen` and `emit` keep trying, so only the signal
    // can end them.
    let gateway = counting_gateway().await;
    let url = gateway.url();
    let modes: [(&str, Vec<&str>); 4] = [
        ("listen", vec!["listen", &url, "--json"]),
        ("emit", vec!["emit", &url, "echo", "--timeout", "120s"]),
        ("daemon", vec!["daemon"]),
        ("demo", vec!["demo"]),
    ];
    for (mode, args) in modes {
        for signal in ["TERM", "INT"] {
            let what = format!("relink {mode}, SIG{signal} after the first line");
            let mut p = Relink::spawn(relink_with_token(&args), &what);
            // The first line on either stream.
            tokio::select! {
                line = p.out.recv() => assert!(line.is_some(), "{what}: stdout closed"),
                line = p.err.recv() => assert!(line.is_some(), "{what}: stderr closed"),
                () = tokio::time::sleep(WAIT) => panic!("{what}: no output within {WAIT:?}"),
            }
            p.signal(signal);
            let done = p.finish().await;
            assert_eq!(
                done.code(),
                Some(0),
                "{what}: a clean stop, not the signal's default action: {:?}",
                done.stderr
            );
        }
    }
}

#[tokio::test]
async fn listen_stdin_skips_invalid_utf8_and_overlong_lines_and_goes_on() {
    let server = node_with(NodeOptions {
        max_payload: Some(1000),
        ..Default::default()
    })
    .await;
    let mut cmd = relink_with_token(&["listen", &server.url(), "--json", "--stdin"]);
    cmd.stdin(Stdio::piped());
    let mut p = Relink::spawn(cmd, "relink listen --stdin, bad lines");
    expect_connected_and_welcome(&mut p).await;

    p.write_stdin_bytes(b"[\"echo\",\"\xff\xfe\"]\n").await;
    expect_warn(&mut p, "not valid UTF-8").await;
    let long = format!("[\"echo\",\"{}\"]\n", "x".repeat(5000));
    p.write_stdin(&long).await;
    expect_warn(&mut p, "longer than the server's maximum payload").await;

    p.write_stdin("[\"echo\",\"after\"]\n").await;
    let echo = p.json_until(|v| v["type"] == "event").await;
    assert_eq!(
        echo,
        serde_json::json!({"type": "event", "name": "echo", "args": ["after"]}),
        "later lines still go out"
    );
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
}

#[tokio::test]
async fn listen_stdin_reports_acks_still_in_flight_when_stopped() {
    let server = node().await;
    let mut cmd = relink_with_token(&[
        "listen",
        &server.url(),
        "--json",
        "--stdin",
        "--retries",
        "0",
        "--ack-timeout",
        "120s",
    ]);
    cmd.stdin(Stdio::piped());
    let mut p = Relink::spawn(cmd, "relink listen --stdin --retries 0");
    expect_connected_and_welcome(&mut p).await;
    // The server never acks "silence"; "tick" is acked and answered with events, which
    // prove that both lines (sent in order) went out.
    p.write_stdin("[\"silence\"]\n[\"tick\",1,1]\n").await;
    p.json_until(|v| v["type"] == "event" && v["name"] == "tick-done")
        .await;
    p.sigterm();
    let done = p.exit().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    let report: Vec<&String> = done
        .stderr
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("not acknowledged yet"))
        .collect();
    assert_eq!(report.len(), 1, "one report: {:?}", done.stderr);
    assert!(report[0].contains("unacknowledged=1"), "{}", report[0]);
}

#[tokio::test]
async fn default_logs_hold_nothing_below_info_and_rust_log_off_prints_nothing() {
    let server = node().await;
    for (format, rust_log) in [("text", None), ("json", None), ("text", Some("off"))] {
        let mut cmd =
            relink_with_token(&["listen", &server.url(), "--json", "--log-format", format]);
        if let Some(filter) = rust_log {
            cmd.env("RUST_LOG", filter);
        }
        let what = format!("relink listen --log-format {format}, RUST_LOG={rust_log:?}");
        let mut p = Relink::spawn(cmd, &what);
        expect_connected_and_welcome(&mut p).await;
        p.sigterm();
        let done = p.finish().await;
        assert_eq!(done.code(), Some(0), "{what}: stderr {:?}", done.stderr);
        if rust_log == Some("off") {
            assert!(done.stderr.is_empty(), "{what}: {:?}", done.stderr);
            continue;
        }
        assert!(
            done.stderr.iter().any(|l| l.contains("INFO")),
            "{what}: INFO records are shown: {:?}",
            done.stderr
        );
        for line in &done.stderr {
            assert!(
                !["DEBUG", "TRACE"].iter().any(|level| line.contains(level)),
                "{what}: a record below INFO: {line}"
            );
            assert!(!line.contains(".rs"), "{what}: a source path: {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// emit

#[tokio::test]
async fn emit_with_ack_prints_the_ack_arguments() {
    let server = node().await;
    let url = server.url();

    let cmd = relink_with_token(&["emit", &url, "echo", "\"plain\"", "--ack"]);
    let done = run(cmd, "relink emit echo '\"plain\"' --ack").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, vec![r#"["plain"]"#.to_owned()]);

    let cmd = relink_with_token(&["emit", &url, "echo", "1", r#"{"a":true}"#, "--ack"]);
    let done = run(cmd, "relink emit echo 1 '{\"a\":true}' --ack").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, vec![r#"[1,{"a":true}]"#.to_owned()]);
}

#[tokio::test]
async fn emit_ends_cleanly_on_sigterm_and_sigint() {
    let server = node().await;
    for signal in ["TERM", "INT"] {
        // Connected and waiting for an ack the server never sends.
        let cmd = relink_with_token(&[
            "emit",
            &server.url(),
            "silence",
            "--ack",
            "--timeout",
            "120s",
        ]);
        let what = format!("relink emit --ack, SIG{signal} while waiting for the ack");
        let mut p = Relink::spawn(cmd, &what);
        p.err_until(|l| l.contains("INFO") && l.contains("connected"))
            .await;
        p.signal(signal);
        let done = p.finish().await;
        assert_eq!(done.code(), Some(0), "{what}: stderr {:?}", done.stderr);
        assert!(
            done.stderr
                .iter()
                .any(|l| l.contains("WARN") && l.contains("before the emit completed")),
            "{what}: says the emit may not have completed: {:?}",
            done.stderr
        );
        assert!(done.stdout.is_empty(), "{what}: no ack printed");
    }
}

// ---------------------------------------------------------------------------------------
// exit codes

#[tokio::test]
async fn usage_errors_exit_2_with_one_line_and_no_network_attempt() {
    let gateway = counting_gateway().await;
    let url = gateway.url();
    let ftp_to_gateway = format!("ftp://{}", gateway.addr());
    let empty = TempFile::with("empty-token", "");
    let blank = TempFile::with("blank-token", "  \n\t\n");
    let huge = TempFile::with("huge-token", &"a".repeat(1 << 20));

    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "listen --token-file <empty file>",
            relink(&["listen", &url, "--json", "--token-file", empty.path()]),
            "token",
        ),
        (
            "emit --token-file <empty file>",
            relink(&["emit", &url, "echo", "--token-file", empty.path()]),
            "token",
        ),
        (
            "listen --token-file <1 MiB file>",
            relink(&["listen", &url, "--json", "--token-file", huge.path()]),
            "larger than 64 KiB",
        ),
        (
            "listen --token-file <whitespace-only file>",
            relink(&["listen", &url, "--token-file", blank.path()]),
            "token",
        ),
        (
            "listen with RELINK_TOKEN of whitespace",
            {
                let mut c = relink(&["listen", &url, "--json"]);
                c.env("RELINK_TOKEN", " \t ");
                c
            },
            "token",
        ),
        (
            "emit with RELINK_TOKEN of whitespace",
            {
                let mut c = relink(&["emit", &url, "echo", "--ack"]);
                c.env("RELINK_TOKEN", "   ");
                c
            },
            "token",
        ),
        (
            "listen ftp://x",
            relink_with_token(&["listen", "ftp://x", "--json"]),
            "url",
        ),
        (
            "listen ftp://<gateway>",
            relink_with_token(&["listen", &ftp_to_gateway, "--json"]),
            "url",
        ),
        (
            "listen 'not a url'",
            relink_with_token(&["listen", "not a url", "--json"]),
            "url",
        ),
        (
            "emit ftp://x",
            relink_with_token(&["emit", "ftp://x", "echo"]),
            "url",
        ),
        (
            "emit 'not a url'",
            relink_with_token(&["emit", "not a url", "echo"]),
            "url",
        ),
    ];
    for (what, cmd, needle) in cases {
        let done = run(cmd, what).await;
        assert_usage_error(&done, what, needle);
    }
    assert_never_dialled(&gateway, "usage errors").await;
}

#[tokio::test]
async fn rejected_credentials_exit_3_for_listen() {
    let server = node().await;
    let mut cmd = relink(&["listen", &server.url(), "--json"]);
    cmd.env("RELINK_TOKEN", "wrong");
    let done = run(cmd, "relink listen with a wrong token").await;
    assert_eq!(done.code(), Some(3), "stderr: {:?}", done.stderr);
    assert_all_ndjson(&done.stdout);
}

#[tokio::test]
async fn rejected_credentials_exit_3_for_emit() {
    let server = node().await;
    let mut cmd = relink(&["emit", &server.url(), "echo", "1", "--ack"]);
    cmd.env("RELINK_TOKEN", "wrong");
    let done = run(cmd, "relink emit with a wrong token").await;
    assert_eq!(done.code(), Some(3), "stderr: {:?}", done.stderr);
    assert!(done.stdout.is_empty(), "no ack printed: {:?}", done.stdout);
}

// ---------------------------------------------------------------------------------------
// help and syntax

fn help_text(done: &Finished) -> String {
    done.stdout.join("\n")
}

#[tokio::test]
async fn help_exits_0_and_documents_the_flags() {
    let done = run(relink(&["--help"]), "relink --help").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    let text = help_text(&done);
    for word in ["listen", "emit", "RELINK_TOKEN", "--token-file"] {
        assert!(text.contains(word), "relink --help lacks {word}:\n{text}");
    }

    let done = run(relink(&["listen", "--help"]), "relink listen --help").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    let text = help_text(&done);
    for flag in [
        "--json",
        "--token-file",
        "--log-format",
        "--stdin",
        "--backoff-initial",
    ] {
        assert!(
            text.contains(flag),
            "relink listen --help lacks {flag}:\n{text}"
        );
    }

    let done = run(relink(&["emit", "--help"]), "relink emit --help").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    let text = help_text(&done);
    for flag in ["--ack", "--timeout", "--token-file", "--log-format"] {
        assert!(
            text.contains(flag),
            "relink emit --help lacks {flag}:\n{text}"
        );
    }
}

#[tokio::test]
async fn unknown_flags_exit_2_without_dialling() {
    let gateway = counting_gateway().await;
    let url = gateway.url();
    for args in [
        vec!["--no-such-flag"],
        vec!["listen", url.as_str(), "--no-such-flag"],
        vec!["emit", url.as_str(), "echo", "--no-such-flag"],
    ] {
        let cmd = relink_with_token(&args);
        let what = format!("relink {}", args.join(" "));
        let done = run(cmd, &what).await;
        assert_eq!(done.code(), Some(2), "{what}: stderr {:?}", done.stderr);
        assert!(
            done.stderr.iter().any(|l| l.contains("--no-such-flag")),
            "{what}: stderr should name the flag: {:?}",
            done.stderr
        );
    }
    assert_never_dialled(&gateway, "unknown flags").await;
}

// ---------------------------------------------------------------------------------------
// the token stays secret

/// The output lines of `done` that contain the token, each prefixed with `what`, after
/// checking there is output to inspect at all.
fn token_leaks(done: &Finished, what: &str) -> Vec<String> {
    assert!(
        done.stderr.len() > 1,
        "{what}: expected RUST_LOG=trace logs to inspect: {:?} {:?}",
        done.stdout,
        done.stderr
    );
    let stdout = done.stdout.iter().map(|l| ("stdout", l));
    let stderr = done.stderr.iter().map(|l| ("stderr", l));
    stdout
        .chain(stderr)
        .filter(|(_, line)| line.contains(DISTINCT_TOKEN))
        .map(|(stream, line)| {
            let line: String = line.chars().take(400).collect();
            format!("[{what}] {stream}: {line}")
        })
        .collect()
}

fn assert_no_leaks(leaks: &[String]) {
    assert!(
        leaks.is_empty(),
        "the token appears in {} output line(s):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

#[tokio::test]
async fn rejected_token_never_appears_in_output_even_at_trace() {
    let server = node().await;
    let url = server.url();
    let mut leaks = Vec::new();
    for format in ["text", "json"] {
        let mut cmd = relink(&["listen", &url, "--json", "--log-format", format]);
        cmd.env("RELINK_TOKEN", DISTINCT_TOKEN)
            .env("RUST_LOG", "trace");
        let what = format!("listen, rejected token, RUST_LOG=trace, --log-format {format}");
        let done = run(cmd, &what).await;
        assert_eq!(done.code(), Some(3), "{what}: stderr {:?}", done.stderr);
        leaks.extend(token_leaks(&done, &what));
    }
    let file = TempFile::with("distinct-token", &format!("{DISTINCT_TOKEN}\n"));
    let mut cmd = relink(&[
        "emit",
        &url,
        "echo",
        "1",
        "--ack",
        "--token-file",
        file.path(),
    ]);
    cmd.env("RUST_LOG", "trace");
    let what = "emit --token-file, rejected token, RUST_LOG=trace";
    let done = run(cmd, what).await;
    assert_eq!(done.code(), Some(3), "{what}: stderr {:?}", done.stderr);
    leaks.extend(token_leaks(&done, what));
    assert_no_leaks(&leaks);
}

#[tokio::test]
async fn accepted_token_never_appears_in_output_even_at_trace() {
    let server = node_with(NodeOptions {
        token: DISTINCT_TOKEN.into(),
        ..Default::default()
    })
    .await;
    let url = server.url();
    let mut leaks = Vec::new();

    let mut cmd = relink(&["listen", &url, "--json", "--stdin"]);
    cmd.env("RELINK_TOKEN", DISTINCT_TOKEN)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped());
    let what = "listen, accepted token, RUST_LOG=trace";
    let mut p = Relink::spawn(cmd, what);
    expect_connected_and_welcome(&mut p).await;
    p.write_stdin("[\"echo\",\"hi\"]\n").await;
    p.json_until(|v| v["type"] == "event" && v["name"] == "echo")
        .await;
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "{what}: stderr {:?}", done.stderr);
    leaks.extend(token_leaks(&done, what));

    // Over long-polling the CONNECT (and the token in it) is an HTTP request body.
    for transport in ["websocket", "polling"] {
        let mut cmd = relink(&[
            "emit",
            &url,
            "echo",
            "\"plain\"",
            "--ack",
            "--transport",
            transport,
        ]);
        cmd.env("RELINK_TOKEN", DISTINCT_TOKEN)
            .env("RUST_LOG", "trace");
        let what = format!("emit --ack --transport {transport}, accepted token, RUST_LOG=trace");
        let done = run(cmd, &what).await;
        assert_eq!(done.code(), Some(0), "{what}: stderr {:?}", done.stderr);
        assert_eq!(done.stdout, vec![r#"["plain"]"#.to_owned()], "{what}");
        leaks.extend(token_leaks(&done, &what));
    }
    assert_no_leaks(&leaks);
}

// ---------------------------------------------------------------------------------------
// errors that say what to do, and the rough edges of a first hour

/// The last non-empty stderr line: the command's own error.
fn last_error(done: &Finished) -> String {
    done.stderr
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn rejected_without_a_token_says_how_to_give_one() {
    let server = node().await;
    let done = run(
        relink(&["emit", &server.url(), "echo", "1", "--ack"]),
        "emit without a token",
    )
    .await;
    assert_eq!(done.code(), Some(3), "stderr: {:?}", done.stderr);
    let error = last_error(&done);
    for needle in [
        "unauthorized",
        "RELINK_TOKEN",
        "--token-file",
        "relink login",
    ] {
        assert!(error.contains(needle), "lacks {needle}: {error}");
    }
}

#[tokio::test]
async fn a_fixed_token_that_is_rejected_is_not_said_to_be_refreshed() {
    let server = node().await;
    let mut cmd = relink(&["emit", &server.url(), "echo", "1", "--ack"]);
    cmd.env("RELINK_TOKEN", "wrong");
    let done = run(cmd, "emit with a wrong token").await;
    assert_eq!(done.code(), Some(3), "stderr: {:?}", done.stderr);
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("trying once more with the same token")),
        "{:?}",
        done.stderr
    );
    assert!(
        !done.stderr.iter().any(|l| l.contains("fresh credentials")),
        "{:?}",
        done.stderr
    );
    let error = last_error(&done);
    assert!(
        error.contains("unauthorized") && !error.contains("RELINK_TOKEN"),
        "the server's message, no hint about a token that was sent: {error}"
    );
}

#[tokio::test]
async fn host_and_port_without_a_scheme_is_a_url() {
    let server = node().await;
    let host_port = format!("127.0.0.1:{}", server.port());
    let done = run(
        relink_with_token(&["emit", &host_port, "echo", "7", "--ack"]),
        "emit to host:port",
    )
    .await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, ["[7]"]);
}

#[tokio::test]
async fn https_to_a_plain_server_says_it_does_not_speak_tls() {
    let server = node().await;
    let url = format!("https://127.0.0.1:{}", server.port());
    let done = run(relink_with_token(&["emit", &url, "echo"]), "emit https://").await;
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
    let error = last_error(&done);
    assert!(error.contains("does not speak TLS"), "{error}");
}

#[tokio::test]
async fn a_path_that_is_not_socket_io_is_named_with_the_flag_to_change_it() {
    let server = node().await;
    let done = run(
        relink_with_token(&[
            "emit",
            &server.url(),
            "echo",
            "--path",
            "/nope/",
            "--timeout",
            "6s",
        ]),
        "emit --path /nope/",
    )
    .await;
    assert_eq!(done.code(), Some(1), "stderr: {:?}", done.stderr);
    let error = last_error(&done);
    assert!(
        error.contains("/nope/") && error.contains("--path"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unknown_namespace_is_named() {
    let server = node().await;
    let done = run(
        relink_with_token(&["emit", &server.url(), "echo", "-n", "/nsx"]),
        "emit -n /nsx",
    )
    .await;
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
    let error = last_error(&done);
    assert!(error.contains(r#"no namespace "/nsx""#), "{error}");
}

#[tokio::test]
async fn an_argument_that_starts_like_json_must_be_json_or_raw() {
    let gateway = counting_gateway().await;
    let done = run(
        relink_with_token(&["emit", &gateway.url(), "echo", "[1,2"]),
        "emit '[1,2'",
    )
    .await;
    assert_usage_error(&done, "emit '[1,2'", "argument 1 is not valid JSON");
    assert_never_dialled(&gateway, "an invalid JSON argument").await;

    let server = node().await;
    let done = run(
        relink_with_token(&["emit", &server.url(), "echo", "[1,2", "--raw", "--ack"]),
        "emit --raw '[1,2'",
    )
    .await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, [r#"["[1,2"]"#]);
}

#[tokio::test]
async fn text_states_are_one_line_per_failure_with_the_logs_attempt_numbers() {
    // Nothing listens on the gateway's upstream: every attempt is refused.
    let gateway = counting_gateway().await;
    let mut p = Relink::spawn(
        relink_with_token(&[
            "listen",
            &gateway.url(),
            "--backoff-initial",
            "50ms",
            "--backoff-max",
            "100ms",
        ]),
        "listen to a refusing gateway",
    );
    let first = p.next_out().await;
    assert_eq!(first, "state: connecting");
    for attempt in 1..=3 {
        let line = p.next_out().await;
        assert!(
            line.starts_with(&format!("state: connecting — attempt {attempt} failed: "))
                && line.contains(&format!("; attempt {} in ", attempt + 1)),
            "{line}"
        );
        let warn = p
            .err_until(|l| l.contains("connection attempt failed"))
            .await;
        assert!(warn.contains(&format!("attempt={attempt} ")), "{warn}");
    }
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0));
}

#[tokio::test]
async fn listen_answers_the_servers_ack_requests_with_ack_with() {
    let server = node().await;
    let mut cmd = relink_with_token(&[
        "listen",
        &server.url(),
        "--json",
        "--stdin",
        "--ack-with",
        r#"["ok",1]"#,
    ]);
    cmd.stdin(Stdio::piped());
    let mut p = Relink::spawn(cmd, "listen --ack-with");
    expect_connected_and_welcome(&mut p).await;
    // The server asks us ("ask" makes it emit "q" with an ack) and reports our answer.
    p.write_stdin("[\"ask\",\"q\"]\n").await;
    let asked = p
        .json_until(|v| v["type"] == "event" && v["name"] == "asked")
        .await;
    assert_eq!(asked["args"][0]["ok"], Value::Bool(true), "{asked}");
    assert_eq!(
        asked["args"][0]["reply"],
        serde_json::json!(["ok", 1]),
        "{asked}"
    );
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0));
}

#[tokio::test]
async fn the_failed_state_line_says_why_the_client_ended() {
    let server = node().await;
    let mut cmd = relink(&["listen", &server.url(), "--json"]);
    cmd.env("RELINK_TOKEN", "wrong");
    let done = run(cmd, "listen --json with a wrong token").await;
    assert_eq!(done.code(), Some(3));
    let failed: Value = done
        .stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["status"] == "failed")
        .expect("a failed state line");
    assert_eq!(failed["end"], "unauthorized", "{failed}");
}

#[tokio::test]
async fn help_names_the_arguments_and_the_environment() {
    let done = run(relink(&["emit", "--help"]), "relink emit --help").await;
    let text = help_text(&done);
    assert!(!text.contains("WORDS"), "{text}");
    for needle in [
        "[URL]",
        "<EVENT>",
        "[ARGS_JSON]",
        "--raw",
        "--path",
        "RELINK_TOKEN",
    ] {
        assert!(text.contains(needle), "emit --help lacks {needle}:\n{text}");
    }
    let done = run(relink(&["--help"]), "relink --help").await;
    let text = help_text(&done);
    assert!(text.contains("RELINK_SESSION_FILE"), "{text}");
    let done = run(relink(&["listen", "--help"]), "relink listen --help").await;
    let text = help_text(&done);
    for needle in ["--ack-with", "[env: RELINK_TOKEN]"] {
        assert!(
            text.contains(needle),
            "listen --help lacks {needle}:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_readme_recipe_works_as_written_with_a_standalone_node_server() {
    // `node interop/node/server.mjs --port 0 --standalone &` in a shell: no stdin to read.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/node/server.mjs");
    let mut node = tokio::process::Command::new("node")
        .args([script, "--port", "0", "--standalone"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let first = timeout(WAIT, lines.next_line())
        .await
        .expect("the port line in time")
        .unwrap()
        .expect("a port line");
    let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
        .as_u64()
        .expect("a port");
    // Its stdin is closed, and it still serves.
    let done = run(
        relink_with_token(&["emit", &format!("127.0.0.1:{port}"), "echo", "2", "--ack"]),
        "emit to the standalone server",
    )
    .await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, ["[2]"]);
    node.kill().await.unwrap();
}

#[tokio::test]
async fn listen_gives_up_after_its_reconnection_attempts() {
    let gateway = counting_gateway().await;
    let done = run(
        relink_with_token(&[
            "listen",
            &gateway.url(),
            "--reconnection-attempts",
            "2",
            "--backoff-initial",
            "10ms",
            "--backoff-max",
            "20ms",
        ]),
        "listen --reconnection-attempts 2",
    )
    .await;
    assert_eq!(done.code(), Some(1), "stderr: {:?}", done.stderr);
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("giving up: no reconnection attempts left")),
        "{:?}",
        done.stderr
    );
    assert_eq!(
        gateway.stats().accepted,
        2,
        "two failed attempts, the first included"
    );
}

// ---------------------------------------------------------------------------------------
// the networks users have: long-polling, proxies from the environment, a company CA

#[tokio::test]
async fn a_polling_only_server_needs_no_flag_beyond_the_url() {
    let server = node_with(NodeOptions {
        transports: Some(vec!["polling"]),
        ..NodeOptions::default()
    })
    .await;
    let url = server.url();
    for extra in [&[][..], &["--transport", "polling"][..]] {
        let mut args = vec!["emit", &url, "echo", "7", "--ack"];
        args.extend_from_slice(extra);
        let done = run(relink_with_token(&args), "emit to a polling-only server").await;
        assert_eq!(done.code(), Some(0), "{extra:?} stderr: {:?}", done.stderr);
        assert_eq!(done.stdout, ["[7]"]);
    }
}

#[tokio::test]
async fn the_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host() {
    const PASSWORD: &str = "pr0xy-SECRET-77";
    let server = node().await;
    let proxy = relink_testkit::proxy::Proxy::start(Some(("bob", PASSWORD)))
        .await
        .unwrap();
    let mut cmd = relink_with_token(&["emit", &server.url(), "echo", "1", "--ack"]);
    cmd.env("HTTP_PROXY", proxy.url_with("bob", PASSWORD))
        .env("RUST_LOG", "trace");
    let done = run(cmd, "emit through HTTP_PROXY").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(done.stdout, ["[1]"]);
    let tunnels = proxy.stats().tunnels;
    assert!(tunnels >= 1, "{:?}", proxy.stats());
    let leaks: Vec<&String> = done
        .stdout
        .iter()
        .chain(&done.stderr)
        .filter(|l| l.contains(PASSWORD))
        .collect();
    assert!(leaks.is_empty(), "the proxy password leaks: {leaks:?}");
    // NO_PROXY names the server: straight there.
    let mut cmd = relink_with_token(&["emit", &server.url(), "echo", "2", "--ack"]);
    cmd.env("http_proxy", proxy.url_with("bob", PASSWORD))
        .env("NO_PROXY", "localhost,127.0.0.1");
    let done = run(cmd, "emit with NO_PROXY").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(
        proxy.stats().tunnels,
        tunnels,
        "NO_PROXY bypasses the proxy"
    );
    // And --no-proxy does too.
    let mut cmd = relink_with_token(&["emit", &server.url(), "echo", "3", "--ack", "--no-proxy"]);
    cmd.env("HTTPS_PROXY", proxy.url())
        .env("HTTP_PROXY", proxy.url());
    let done = run(cmd, "emit --no-proxy").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    assert_eq!(proxy.stats().tunnels, tunnels);
}

#[tokio::test]
async fn a_proxy_variable_that_cannot_be_used_fails_at_once_naming_it() {
    let server = node().await;
    for (name, value) in [
        ("HTTPS_PROXY", "ftp://bob:s3cret@proxy:21"),
        ("HTTPS_PROXY", "::::x"),
        ("http_proxy", "http://[::1"),
        ("HTTP_PROXY", "http://127.0.0.1:notaport"),
    ] {
        let mut cmd = relink_with_token(&["emit", &server.url(), "echo", "1"]);
        cmd.env(name, value);
        let done = run(cmd, &format!("emit with {name}={value}")).await;
        // Not a direct connection without a word: a configuration error, before any dial.
        assert_eq!(done.code(), Some(2), "{name}={value}: {:?}", done.stderr);
        let error = last_error(&done);
        assert!(error.contains(name), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }
    // --no-proxy says the variables do not matter.
    let mut cmd = relink_with_token(&["emit", &server.url(), "echo", "1", "--no-proxy"]);
    cmd.env("HTTPS_PROXY", "ftp://proxy")
        .env("HTTP_PROXY", "ftp://proxy");
    let done = run(cmd, "emit --no-proxy with a broken HTTPS_PROXY").await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_is_said_so_and_not_retried() {
    let server = node().await;
    let proxy = relink_testkit::proxy::Proxy::start(Some(("bob", "pw")))
        .await
        .unwrap();
    let done = run(
        relink_with_token(&["emit", &server.url(), "echo", "--proxy", &proxy.url()]),
        "emit --proxy without credentials",
    )
    .await;
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
    let error = last_error(&done);
    assert!(error.contains("requires credentials"), "{error}");
    assert_eq!(
        proxy.stats().auth_failures,
        1,
        "one attempt, no retry storm"
    );
}

#[tokio::test]
async fn ssl_cert_file_trusts_a_private_ca_and_without_it_the_certificate_is_named() {
    let server = node().await;
    let front = relink_testkit::tls::TlsFront::start(
        format!("127.0.0.1:{}", server.port()).parse().unwrap(),
    )
    .await
    .unwrap();
    let ca = TempFile::with("private-ca.pem", front.ca_pem());
    for transport in ["websocket", "polling"] {
        let mut cmd = relink_with_token(&[
            "emit",
            &front.url(),
            "echo",
            "5",
            "--ack",
            "--transport",
            transport,
        ]);
        cmd.env("SSL_CERT_FILE", ca.path());
        let done = run(cmd, "emit with SSL_CERT_FILE").await;
        assert_eq!(done.code(), Some(0), "{transport}: {:?}", done.stderr);
        assert_eq!(done.stdout, ["[5]"]);
    }
    let mut cmd = relink_with_token(&["emit", &front.url(), "echo", "5", "--ack"]);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
    let done = run(cmd, "emit without the CA").await;
    assert_eq!(done.code(), Some(2), "stderr: {:?}", done.stderr);
    let error = last_error(&done);
    let port = front
        .url()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains(&format!("certificate of localhost:{port} is not trusted"))
            && error.contains("SSL_CERT_FILE"),
        "{error}"
    );
}

/// Reads `http://ADDR/metrics` (the Prometheus text format) into `series → value`, the
/// series written as in the text (`name{label="value"}`).
async fn scrape(url: &str) -> std::collections::HashMap<String, f64> {
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("not a metrics URL: {url}"));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: relink\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response),
    )
    .await
    .expect("the scrape answers in time")
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn listen_metrics_count_an_outage_its_attempts_and_the_traffic() {
    let server = node().await;
    let gateway = Gateway::start(format!("127.0.0.1:{}", server.port()).parse().unwrap())
        .await
        .unwrap();
    let mut cmd = relink_with_token(&[
        "listen",
        &gateway.url(),
        "--json",
        "--stdin",
        "--metrics",
        "127.0.0.1:0",
        "--backoff-initial",
        "100ms",
        "--backoff-max",
        "300ms",
    ]);
    cmd.stdin(Stdio::piped());
    let mut p = Relink::spawn(cmd, "relink listen --metrics");
    let serving = p.err_until(|l| l.contains("serving metrics")).await;
    let url = serving
        .split("url=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no url in {serving:?}"))
        .to_owned();
    expect_connected_and_welcome(&mut p).await;
    p.write_stdin("[\"echo\",\"hi\"]\n").await;
    p.json_until(|v| v["type"] == "event" && v["name"] == "echo")
        .await;

    // An outage: the gateway answers 503 and drops the connection, for a few attempts.
    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    gateway.reset_all();
    for _ in 0..3 {
        p.err_until(|l| l.contains("connection attempt failed"))
            .await;
    }
    gateway.set_mode(Mode::Forward);
    // Over once the new connection has held for the stable period.
    p.err_until(|l| l.contains("connection recovered")).await;

    let metrics = scrape(&url).await;
    let get = |series: &str| metrics.get(series).copied().unwrap_or(0.0);
    let seen = |what: &str| p.err_seen.iter().filter(|l| l.contains(what)).count() as f64;
    let failed = seen("connection attempt failed");
    let lost = seen("connection lost");
    assert!(failed >= 3.0, "{}", p.context());
    assert_eq!(
        get("relink_connection_attempts_total{class=\"connected\"}"),
        2.0,
        "{metrics:?}"
    );
    assert_eq!(
        get("relink_connection_attempts_total{class=\"transient\"}"),
        failed,
        "one per failed attempt logged: {metrics:?}"
    );
    assert_eq!(get("relink_outages_total"), 1.0, "{metrics:?}");
    assert_eq!(
        get("relink_outage_duration_seconds_count"),
        1.0,
        "{metrics:?}"
    );
    assert!(
        get("relink_outage_duration_seconds_sum") > 0.0,
        "{metrics:?}"
    );
    // Every WARN about the outage announced a wait.
    assert_eq!(
        get("relink_reconnect_delay_seconds_count"),
        failed + lost,
        "{metrics:?}"
    );
    assert_eq!(get("relink_events_sent_total"), 1.0, "{metrics:?}");
    // Two welcomes (one per connection) and the echo.
    assert_eq!(get("relink_events_received_total"), 3.0, "{metrics:?}");
    assert!(get("relink_received_bytes_total") > 0.0, "{metrics:?}");
    assert!(get("relink_sent_bytes_total") > 0.0, "{metrics:?}");
    assert_eq!(get("relink_outbox_packets"), 0.0, "{metrics:?}");
    assert_eq!(get("relink_acks_pending"), 0.0, "{metrics:?}");

    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    gateway.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// listen and a slow, stalled or closed stdout

/// Events in the bursts below: their lines (about 2 MB) are many times a pipe's capacity.
const BURST: u64 = 50_000;

/// A process's stdout as the test holds it: the read end of its pipe, and a way to tell
/// whether the pipe is full.
struct HeldStdout {
    reader: tokio::net::unix::pipe::Receiver,
    /// A copy of the write end, never written: only asked whether the pipe has room.
    probe: std::os::fd::OwnedFd,
}

impl HeldStdout {
    /// Whether a write would have to wait: the pipe has no free page left.
    fn full(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&self.probe, PollFlags::OUT)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&now)).unwrap();
        !fds[0].revents().contains(PollFlags::OUT)
    }

    /// Waits until the pipe is full, which means the process writing it is blocked.
    async fn wait_until_full(&self, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.full() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: stdout's pipe still not full after {WAIT:?}"
            );
            // Nothing tells a reader that its pipe is full: look again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The lines, read from now on; the probe is closed.
    fn lines(self) -> tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::pipe::Receiver>> {
        tokio::io::BufReader::new(self.reader).lines()
    }
}

/// The next line of a stdout read by the test, within [`WAIT`].
async fn line_of(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::pipe::Receiver>>,
) -> String {
    match timeout(WAIT, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        other => panic!("no stdout line within {WAIT:?}: {other:?}"),
    }
}

/// Stderr lines that would alarm someone who only piped `listen` into `head`.
fn alarming(stderr: &[String]) -> Vec<&String> {
    stderr
        .iter()
        .filter(|l| {
            let lower = l.to_lowercase();
            ["error", "warn", "relink:", "broken pipe", "panic"]
                .iter()
                .any(|w| lower.contains(w))
        })
        .collect()
}

#[tokio::test]
async fn listen_prints_every_event_of_a_burst_once_and_in_order_through_a_stalled_pipe() {
    let server = node_with(NodeOptions {
        burst_on_connect: BURST,
        ..Default::default()
    })
    .await;
    let cmd = relink_with_token(&["listen", &server.url(), "--json"]);
    let what = "listen --json, a burst, stdout not read for a while";
    let (p, stdout) = Relink::spawn_holding_stdout(cmd, what);
    // Not read until the pipe is full: `listen` then waits for room, and the events behind
    // must wait too, not be dropped.
    stdout.wait_until_full(what).await;
    let mut lines = stdout.lines();
    let mut expected = 1;
    loop {
        let line = line_of(&mut lines).await;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert_ne!(v["type"], "lagged", "nothing may be dropped: {line}");
        if v["type"] != "event" {
            continue;
        }
        match v["name"].as_str() {
            Some("burst") => {
                assert_eq!(
                    v["args"],
                    serde_json::json!([expected]),
                    "burst events arrive once each, in order"
                );
                expected += 1;
            }
            Some("burst-done") => {
                assert_eq!(v["args"], serde_json::json!([BURST]), "{line}");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(expected, BURST + 1, "every burst event before burst-done");
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    server.stop().await;
}

#[tokio::test]
async fn listen_prints_a_lost_connection_after_the_events_it_carried_and_before_the_next_ones() {
    let mut server = node_with(NodeOptions {
        burst_on_connect: BURST,
        recovery: true,
        ..Default::default()
    })
    .await;
    let cmd = relink_with_token(&[
        "listen",
        &server.url(),
        "--json",
        "--backoff-initial",
        "100ms",
    ]);
    let what = "listen --json, a burst, the link lost while stdout lags";
    let (p, stdout) = Relink::spawn_holding_stdout(cmd, what);
    stdout.wait_until_full(what).await;
    // The link goes while thousands of its events still wait to be printed; the session is
    // recovered, and what the server had not written yet is replayed on the new link.
    server.disconnect_all().await.expect("disconnect-all");
    let mut lines = stdout.lines();
    let mut expected = 1;
    let mut connected = false;
    let mut links = 0;
    loop {
        let line = line_of(&mut lines).await;
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        match (v["type"].as_str(), v["name"].as_str()) {
            (Some("state"), _) => {
                let now = v["status"] == "connected";
                if now && !connected {
                    links += 1;
                }
                connected = now;
            }
            (Some("event"), Some("burst")) => {
                assert!(
                    connected,
                    "event {expected} printed while the state says {connected}: {line}"
                );
                assert_eq!(
                    v["args"],
                    serde_json::json!([expected]),
                    "once each, in order"
                );
                expected += 1;
            }
            (Some("event"), Some("burst-done")) => {
                assert_eq!(expected, BURST + 1, "every burst event before burst-done");
            }
            (Some("lagged"), _) => panic!("nothing may be dropped: {line}"),
            _ => {}
        }
        // The lost link and the recovered one (after the burst, or in the middle of it).
        if links == 2 && expected == BURST + 1 {
            break;
        }
    }
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    server.stop().await;
}

#[tokio::test]
async fn listen_with_a_stalled_stdout_still_stops_on_sigterm_and_sigint() {
    let server = node_with(NodeOptions {
        burst_on_connect: BURST,
        ..Default::default()
    })
    .await;
    for signal in ["TERM", "INT"] {
        let cmd = relink_with_token(&["listen", &server.url(), "--json"]);
        let what = format!("listen --json, stdout never read, SIG{signal}");
        // Held, never read: like `relink listen --json | (sleep 1000)`.
        let (p, stdout) = Relink::spawn_holding_stdout(cmd, &what);
        stdout.wait_until_full(&what).await;
        p.signal(signal);
        let done = p.exits_within_prompt(&format!("SIG{signal}")).await;
        assert_eq!(
            done.code(),
            Some(0),
            "{what}: a clean stop: {:?}",
            done.stderr
        );
        drop(stdout);
    }
    server.stop().await;
}

#[tokio::test]
async fn listen_ends_by_itself_when_its_stdout_reader_goes_away() {
    // A quiet server, in text mode: after the welcome nothing more is printed (not even the
    // state change once the connection has held, which text mode does not repeat), so only
    // watching stdout can tell that its reader left. A bursting one: the writes fail.
    for (burst, json) in [(0, false), (BURST, true)] {
        let server = node_with(NodeOptions {
            burst_on_connect: burst,
            ..Default::default()
        })
        .await;
        let url = server.url();
        let mut args = vec!["listen", url.as_str()];
        if json {
            args.push("--json");
        }
        let what = format!("{} | head -n 3, burst of {burst}", args.join(" "));
        let (p, stdout) = Relink::spawn_holding_stdout(relink_with_token(&args), &what);
        let mut lines = stdout.lines();
        // Up to the welcome: states, then the event.
        loop {
            let line = line_of(&mut lines).await;
            if line.starts_with("event ") || line.contains(r#""type":"event""#) {
                break;
            }
        }
        drop(lines);
        let done = p.exits_within_prompt("its stdout reader went away").await;
        assert_eq!(
            done.code(),
            Some(0),
            "{what}: a reader that has had enough is a normal end: {:?}",
            done.stderr
        );
        assert!(
            alarming(&done.stderr).is_empty(),
            "{what}: quiet about it: {:?}",
            done.stderr
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn overflow_is_backpressure_or_drop_and_nothing_else() {
    let server = node().await;
    let cmd = relink_with_token(&["listen", &server.url(), "--json", "--overflow", "drop"]);
    let mut p = Relink::spawn(cmd, "listen --overflow drop");
    expect_connected_and_welcome(&mut p).await;
    p.sigterm();
    let done = p.finish().await;
    assert_eq!(done.code(), Some(0), "stderr: {:?}", done.stderr);
    server.stop().await;

    let gateway = counting_gateway().await;
    let url = gateway.url();
    for args in [
        vec!["listen", url.as_str(), "--overflow", "nonsense"],
        vec!["daemon", "--overflow", "nonsense"],
    ] {
        let what = format!("relink {}", args.join(" "));
        let done = run(relink_with_token(&args), &what).await;
        assert_eq!(done.code(), Some(2), "{what}: stderr {:?}", done.stderr);
        let stderr = done.stderr.join("\n");
        for word in ["nonsense", "backpressure", "drop"] {
            assert!(stderr.contains(word), "{what}: names {word}: {stderr}");
        }
    }
    assert_never_dialled(&gateway, "--overflow nonsense").await;

    let done = run(relink(&["listen", "--help"]), "relink listen --help").await;
    let text = help_text(&done);
    assert!(text.contains("--overflow"), "{text}");
}
