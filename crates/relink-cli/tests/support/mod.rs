//! What the tests that run the `relink` binary share: an isolated command line, unique temp
//! paths, and stdout/stderr read line by line.

#![allow(dead_code)] // Each test binary uses its own part of this.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// A path in the temp dir no other test (or test run) uses.
pub(crate) fn unique_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "relink-cli-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The binary with `args` and a clean, isolated environment: no inherited token, log
/// filter or Sentry DSN, the stored session at `session_file` (its token in the file, not
/// the keychain); stdout and stderr piped,
/// killed when dropped.
pub(crate) fn relink_command(args: &[&str], session_file: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relink"));
    cmd.args(args)
        .env_remove("RELINK_TOKEN")
        .env_remove("RUST_LOG")
        .env_remove("SENTRY_DSN")
        // Tests talk to loopback only; a proxy in the caller's environment is not theirs.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("RELINK_SESSION_FILE", session_file)
        // Never the keychain of whoever runs the tests.
        .env("RELINK_KEYCHAIN", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The lines `reader` produces, read by a task of their own.
pub(crate) fn pump<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
