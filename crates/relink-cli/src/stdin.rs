//! `listen --stdin`: each stdin line, a JSON array `["event", arg, ...]`, emitted in order.
//!
//! The rules, which the README states:
//! - Lines are read only once the first handshake has told the server's `maxPayload`; until
//!   then they wait in the pipe. A line longer than that (or than [`MAX_LINE`], whatever the
//!   server says) is skipped with a WARN, and never held in memory beyond the limit.
//! - A line that is not UTF-8 or not a JSON array is skipped with a WARN; later lines still
//!   go out.
//! - Stdin is read by a thread of its own: a blocking read cannot be cancelled, and must not
//!   hold the process when a signal asks it to stop.
//! - At a stop, acked emits still waiting for their ack are abandoned and counted in one
//!   WARN; a line read but not sent yet (waiting for room in the outbox, or read ahead) is
//!   said too. Lines not read yet stay in the pipe.

use crate::connect::parse_emit_line;
use relink::Client;
use std::io::BufRead;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Lines read ahead of the emitter: one, so that at most two lines (this one and the one
/// being sent) are in memory, and a stop leaves the rest in the pipe, unread.
const READ_AHEAD: usize = 1;
/// The longest line, whatever `maxPayload` the server announces: a hostile or misconfigured
/// server must not lift the bound.
const MAX_LINE: usize = 16 << 20;

/// How the emits are sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// `Some`: each line is sent with an ack, waited for this long.
    pub(crate) ack_timeout: Option<Duration>,
    /// Resends after an ack timeout or a drop (with `ack_timeout`).
    pub(crate) retries: u32,
}

/// The task that emits stdin lines; stop it with [`StdinEmits::stop`].
pub(crate) struct StdinEmits {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StdinEmits {
    pub(crate) fn start(client: Client, delivery: Delivery) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(emit_lines(client, delivery, stopped));
        StdinEmits { stop, task }
    }

    /// Stops reading and emitting; reports what was abandoned.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// One line from stdin, or why it was skipped.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Text(String),
    TooLong { limit: usize },
    NotUtf8,
}

async fn emit_lines(client: Client, delivery: Delivery, mut stopped: watch::Receiver<bool>) {
    let stop = async |stopped: &mut watch::Receiver<bool>| {
        let _ = stopped.wait_for(|s| *s).await;
    };
    // Lines wait in the pipe until the server's limit is known.
    tokio::select! {
        () = stop(&mut stopped) => return,
        connected = client.wait_connected() => if connected.is_err() { return },
    }
    let mut lines = spawn_reader(client.clone());
    let mut acks = JoinSet::new();
    loop {
        let line = tokio::select! {
            () = stop(&mut stopped) => break,
            Some(_) = acks.join_next(), if !acks.is_empty() => continue,
            line = lines.recv() => line,
        };
        let Some(line) = line else {
            // End of stdin: the acks in flight still resolve (and are reported) unless a
            // stop comes first.
            tokio::select! {
                () = stop(&mut stopped) => break,
                () = async { while acks.join_next().await.is_some() {} } => return,
            }
        };
        tokio::select! {
            () = stop(&mut stopped) => {
                tracing::warn!("stdin line not sent: stopping while it waited to be queued");
                break;
            }
            () = send_line(&client, line, delivery, &mut acks) => {}
        }
    }
    lines.close();
    let unsent = std::iter::from_fn(|| lines.try_recv().ok()).count();
    if unsent > 0 {
        tracing::warn!(
            lines = unsent,
            "stopping with stdin lines read but not sent"
        );
    }
    while acks.try_join_next().is_some() {}
    if !acks.is_empty() {
        tracing::warn!(
            unacknowledged = acks.len(),
            "stopping with stdin emits not acknowledged yet: they may or may not have arrived"
        );
    }
    acks.abort_all();
}

async fn send_line(client: &Client, line: Line, delivery: Delivery, acks: &mut JoinSet<()>) {
    let text = match line {
        Line::Text(text) => text,
        Line::TooLong { limit } => {
            tracing::warn!(
                limit,
                "stdin line ignored: longer than the server's maximum payload"
            );
            return;
        }
        Line::NotUtf8 => {
            tracing::warn!("stdin line ignored: not valid UTF-8");
            return;
        }
    };
    if text.trim().is_empty() {
        return;
    }
    let (name, payload) = match parse_emit_line(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "stdin line ignored");
            return;
        }
    };
    let Some(timeout) = delivery.ack_timeout else {
        if let Err(e) = client.emit(name, payload).await {
            tracing::warn!(error = %e, "emit failed");
        }
        return;
    };
    match client
        .emit_acked(name.clone(), payload, timeout, delivery.retries)
        .await
    {
        Ok(ack) => {
            acks.spawn(async move {
                if let Err(e) = ack.await {
                    tracing::warn!(event = %name, error = %e, "emit not acknowledged");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "emit failed"),
    }
}

/// Reads stdin on a thread of its own, one bounded line at a time, the bound being the
/// server's `maxPayload` when the line starts.
fn spawn_reader(client: Client) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let spawned = std::thread::Builder::new()
        .name("relink-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut buf = Vec::new();
            loop {
                let limit = client
                    .max_payload()
                    .map_or(MAX_LINE, |max| usize::try_from(max).unwrap_or(MAX_LINE))
                    .min(MAX_LINE);
                let line = match read_line(&mut input, limit, &mut buf) {
                    Ok(Some(line)) => line,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "stdin unreadable: no more stdin emits");
                        return;
                    }
                };
                if tx.blocking_send(line).is_err() {
                    // The emitter stopped while this line waited for it.
                    tracing::warn!(lines = 1, "stopping with stdin lines read but not sent");
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read stdin: no stdin emits");
    }
    rx
}

/// Reads one line (without its `\n` or `\r\n`) of at most `limit` bytes; a longer line is
/// read to its end but not kept. `None` at the end of input.
fn read_line(
    input: &mut impl BufRead,
    limit: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Line>> {
    buf.clear();
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !read_any {
                return Ok(None);
            }
            break;
        }
        read_any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        if !too_long {
            // The `\r` of a `\r\n` may still be in `part`: allow one byte for it.
            if buf.len() + part.len() > limit.saturating_add(1) {
                too_long = true;
                buf.clear();
                buf.shrink_to(0);
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = newline.map_or(chunk.len(), |i| i + 1);
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if too_long || buf.len() > limit {
        return Ok(Some(Line::TooLong { limit }));
    }
    Ok(Some(match String::from_utf8(std::mem::take(buf)) {
        Ok(text) => Line::Text(text),
        Err(_) => Line::NotUtf8,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn lines(input: &[u8], limit: usize) -> Vec<Line> {
        // A small buffer, so lines span several reads.
        let mut input = BufReader::with_capacity(3, Cursor::new(input.to_vec()));
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut input, limit, &mut buf).expect("in memory") {
            out.push(line);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.to_owned())
    }

    #[test]
    fn lines_end_at_newline_crlf_or_eof() {
        assert_eq!(
            lines(b"[\"a\"]\n[\"b\"]\r\n\n[\"c\"]", 100),
            [text("[\"a\"]"), text("[\"b\"]"), text(""), text("[\"c\"]")]
        );
        assert_eq!(lines(b"", 100), []);
    }

    #[test]
    fn invalid_utf8_is_one_skipped_line_not_the_end() {
        assert_eq!(
            lines(b"\xff\xfe\n[\"after\"]\n", 100),
            [Line::NotUtf8, text("[\"after\"]")]
        );
    }

    #[test]
    fn lines_over_the_limit_are_skipped_and_the_next_one_read() {
        assert_eq!(
            lines(b"12345\n123456\n1234\r\n123456\r\nok", 5),
            [
                text("12345"),
                Line::TooLong { limit: 5 },
                text("1234"),
                Line::TooLong { limit: 5 },
                text("ok"),
            ]
        );
    }

    #[test]
    fn a_huge_line_is_never_held_in_memory() {
        let huge = std::io::repeat(b'x')
            .take(50 << 20)
            .chain(Cursor::new(b"\n[\"next\"]\n".to_vec()));
        let mut input = BufReader::new(huge);
        let mut buf = Vec::new();
        let line = read_line(&mut input, 1000, &mut buf).expect("in memory");
        assert_eq!(line, Some(Line::TooLong { limit: 1000 }));
        assert!(buf.capacity() < 64 * 1024, "kept {} bytes", buf.capacity());
        let next = read_line(&mut input, 1000, &mut buf).expect("in memory");
        assert_eq!(next, Some(text("[\"next\"]")));
    }
}
