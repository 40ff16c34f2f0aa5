//! `relink demo` end to end: the real binary, a short outage, stderr a pipe (plain lines).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for the whole run; the child is killed past it. A bound, not a timing claim.
const LIMIT: Duration = Duration::from_secs(60);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `relink ARGS` to completion (killed after [`LIMIT`]), capturing both streams.
fn relink(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relink"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SENTRY_DSN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let Some(status) = status else {
        panic!(
            "relink {args:?} still running after {LIMIT:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    };
    Run {
        status,
        stdout,
        stderr,
    }
}

/// The number in the summary row whose label starts with `label`.
fn summary_value(stdout: &str, label: &str) -> u64 {
    let row = stdout
        .lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} row in:\n{stdout}"));
    row[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number in {row:?}"))
}

#[test]
fn demo_rides_out_a_short_outage() {
    let run = relink(&["demo", "--outage", "2s"]);
    let context = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.status.success(), "{:?}\n{context}", run.status);

    // A 2 s outage with a 500 ms initial backoff may not reach the 5 failed attempts that
    // escalate; it must never escalate twice.
    assert!(
        summary_value(&run.stdout, "ERROR records") <= 1,
        "{context}"
    );
    assert!(summary_value(&run.stdout, "WARN records") >= 1, "{context}");
    assert!(
        summary_value(&run.stdout, "ticks received") > 0,
        "{context}"
    );

    assert!(run.stderr.contains("OUTAGE"), "{context}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("reconnecting") && l.contains("failed")),
        "no failed reconnect attempt shown\n{context}"
    );
    assert!(run.stderr.contains("recovered"), "{context}");
    // Plain lines only: no terminal control sequences when stderr is a pipe.
    assert!(!run.stderr.contains('\u{1b}'), "{context}");
    // Data on stdout, status on stderr.
    assert!(!run.stdout.contains("OUTAGE"), "{context}");
}

#[test]
fn demo_help_mentions_the_outage_flag() {
    let run = relink(&["demo", "--help"]);
    assert!(run.status.success());
    assert!(run.stdout.contains("--outage"), "{}", run.stdout);
}
