//! socket.io-client 4.8 on Node, run by `node/client.mjs` against the same server.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(150);

/// One run's results.
pub struct JsResult {
    pub emit: Vec<f64>,
    pub receive: Vec<f64>,
    /// Per receive figure: events that never reached the handler.
    pub lost: Vec<u64>,
    pub ack_us: Vec<f64>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node/client.mjs")
}

fn node_modules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop/node/node_modules/socket.io-client")
}

/// Why the JS column is empty, if it is.
pub fn unavailable() -> Option<String> {
    let node = std::env::var("RELINK_NODE").unwrap_or_else(|_| "node".into());
    let version = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(version, Ok(s) if s.success()) {
        return Some(format!("`{node}` not found"));
    }
    if !node_modules().exists() {
        return Some("run `npm ci --prefix interop/node` first".into());
    }
    None
}

/// Runs every figure once; `None` (with a message) when the script fails.
pub fn run(
    url: &str,
    emit: &[(u64, u64)],
    receive: &[(u64, u64)],
    warmup: u64,
    acks: u64,
    transports: &[&str],
) -> Option<JsResult> {
    let node = std::env::var("RELINK_NODE").unwrap_or_else(|_| "node".into());
    let config = serde_json::json!({
        "emit": emit,
        "receive": receive,
        "warmup": warmup,
        "acks": acks,
        "transports": transports,
    });
    let mut child = Command::new(node)
        .arg(script())
        .arg(url)
        .arg(config.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("js: client.mjs did not finish in {TIMEOUT:?}");
                return None;
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    if !output.status.success() {
        eprintln!("js: client.mjs failed: {}", output.status);
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let list = |key: &str| -> Vec<f64> {
        value[key]
            .as_array()
            .map(|items| items.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    Some(JsResult {
        emit: list("emit"),
        receive: list("receive"),
        lost: value["lost"]
            .as_array()
            .map(|items| items.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default(),
        ack_us: list("ack_us"),
    })
}
