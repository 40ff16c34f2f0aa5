//! What goes to stdout: NDJSON lines or plain text, one line per state change or event.
//!
//! Lines are formatted by the caller and written by a task of their own through a small
//! bounded queue, so that a slow or stalled stdout never blocks the caller's `select!`:
//! printing waits for room in the queue (which is how a slow reader slows `listen` down), and
//! that wait can be cut short by a signal; a write never can.

use crate::exit::CliError;
use relink::{ConnectionState, Event, Payload};
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::{self, Write};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Lines printed ahead of what stdout has taken: enough to write in batches, few enough that
/// a slow reader soon slows the printer (and, through it, the server) down.
const QUEUED_LINES: usize = 64;
/// Queued lines are joined into one write up to about this many bytes.
const BATCH_BYTES: usize = 64 << 10;

#[derive(Serialize)]
struct StateLine<'a> {
    r#type: &'static str,
    status: relink::Status,
    socket_id: Option<&'a str>,
    attempt: u32,
    recovered: bool,
    error: Option<&'a str>,
    reason: Option<&'static str>,
    next_attempt_ms: Option<u64>,
    transport: Option<relink::Transport>,
    end: Option<relink::EndReason>,
}

#[derive(Serialize)]
struct EventLine<'a> {
    r#type: &'static str,
    name: &'a str,
    args: &'a RawValue,
    #[serde(skip_serializing_if = "<[usize]>::is_empty")]
    attachments: Vec<usize>,
}

/// Stdout's reader went away, or stdout failed: nothing more can be printed.
/// [`Output::finish`] says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StdoutClosed;

/// Prints lines on stdout, NDJSON or text, in the order they are given.
pub(crate) struct Output {
    json: bool,
    /// The last state line printed in text mode: the same line twice is printed once.
    last_state: Option<String>,
    lines: mpsc::Sender<String>,
    writer: JoinHandle<io::Result<()>>,
}

impl Output {
    /// Starts the task that writes stdout; call inside the runtime.
    pub(crate) fn start(json: bool) -> Self {
        let (lines, queue) = mpsc::channel(QUEUED_LINES);
        Output {
            json,
            last_state: None,
            lines,
            writer: tokio::spawn(write_lines(queue)),
        }
    }

    /// Queues a line; waits while the queue is full.
    async fn line(&self, text: String) -> Result<(), StdoutClosed> {
        self.lines.send(text).await.map_err(|_| StdoutClosed)
    }

    /// Resolves once nothing more can be printed (see [`StdoutClosed`]).
    pub(crate) async fn closed(&self) {
        self.lines.closed().await;
    }

    /// Waits until every line printed so far is written. A reader that went away is a
    /// normal end (`relink listen | head`), not an error; another write error is.
    pub(crate) async fn finish(self) -> Result<(), CliError> {
        drop(self.lines);
        match self.writer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                tracing::debug!("stdout closed by its reader");
                Ok(())
            }
            Ok(Err(e)) => Err(CliError::Other(format!("cannot write to stdout: {e}"))),
            Err(e) => Err(CliError::Other(format!("cannot write to stdout: {e}"))),
        }
    }

    pub(crate) async fn state(&mut self, state: &ConnectionState) -> Result<(), StdoutClosed> {
        if self.json {
            let line = StateLine {
                r#type: "state",
                status: state.status,
                socket_id: state.socket_id.as_deref(),
                attempt: state.attempt,
                recovered: state.recovered,
                error: state.last_error.as_deref(),
                reason: state.reason.map(relink::Reason::as_str),
                next_attempt_ms: state
                    .next_attempt_in
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                transport: state.transport,
                end: state.end,
            };
            self.line(serde_json::to_string(&line).unwrap_or_default())
                .await
        } else if let Some(text) = state_text(state)
            && self.last_state.as_deref() != Some(text.as_str())
        {
            self.last_state = Some(text.clone());
            self.line(text).await
        } else {
            Ok(())
        }
    }

    /// The reader fell behind and `missed` items were dropped (`Incoming::Lagged`).
    pub(crate) async fn lagged(&self, missed: u64) -> Result<(), StdoutClosed> {
        let text = if self.json {
            serde_json::json!({ "type": "lagged", "missed": missed }).to_string()
        } else {
            format!("lagged: {missed} events dropped (not read in time)")
        };
        self.line(text).await
    }

    pub(crate) async fn event(&self, event: &Event) -> Result<(), StdoutClosed> {
        match payload_line(self.json, event.name(), event.args()) {
            Some(text) => self.line(text).await,
            None => Ok(()),
        }
    }
}

/// Prints an ack's arguments as one JSON array line (`relink emit --ack`: one line, then the
/// process ends, so a plain blocking write). A closed stdout is not worth dying loudly for.
pub(crate) fn print_ack(args: &Payload) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", args.as_json());
    let _ = out.flush();
}

/// An event as one line; `None` for arguments that are not JSON (never from relink).
fn payload_line(json: bool, name: &str, args: &Payload) -> Option<String> {
    if json {
        let raw = serde_json::from_str::<&RawValue>(args.as_json()).ok()?;
        let line = EventLine {
            r#type: "event",
            name,
            args: raw,
            attachments: args.attachments().iter().map(|a| a.len()).collect(),
        };
        serde_json::to_string(&line).ok()
    } else {
        let mut text = format!("event {name}: {}", args.as_json());
        if !args.attachments().is_empty() {
            let sizes: Vec<String> = args
                .attachments()
                .iter()
                .map(|a| format!("{} bytes", a.len()))
                .collect();
            text.push_str(&format!(" + binary [{}]", sizes.join(", ")));
        }
        Some(text)
    }
}

/// Writes the queued lines to stdout, batching what is already queued into one write, until
/// the queue is closed (everything written) or stdout fails. A reader that goes away is
/// `BrokenPipe`, noticed even while there is nothing to write.
async fn write_lines(mut queue: mpsc::Receiver<String>) -> io::Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut reader_gone = std::pin::pin!(reader_gone());
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    loop {
        let line = tokio::select! {
            biased;
            line = queue.recv() => match line {
                Some(line) => line,
                None => return Ok(()),
            },
            () = &mut reader_gone => return Err(io::ErrorKind::BrokenPipe.into()),
        };
        batch.clear();
        batch.extend_from_slice(line.as_bytes());
        batch.push(b'\n');
        while batch.len() < BATCH_BYTES {
            let Ok(line) = queue.try_recv() else { break };
            batch.extend_from_slice(line.as_bytes());
            batch.push(b'\n');
        }
        stdout.write_all(&batch).await?;
        stdout.flush().await?;
    }
}

/// Resolves when stdout is a pipe (or socket, or terminal) whose other end is closed, so that
/// `relink listen | head -n 3` ends when `head` does, not at the next event, which may be
/// hours away. Never resolves for a stdout without such an end (a file, /dev/null).
#[cfg(unix)]
async fn reader_gone() {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let (gone, told) = tokio::sync::oneshot::channel();
    let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() else {
        return std::future::pending().await;
    };
    // A thread of its own, not the runtime's blocking pool: it sleeps until the process
    // exits, and the runtime's shutdown would wait for a blocking task. Asking for no event
    // at all, the poll wakes only for an error (a pipe without a reader) or a hang-up, never
    // for each read the reader makes.
    let watcher = std::thread::Builder::new()
        .name("stdout-reader".into())
        .spawn(move || {
            loop {
                let mut fds = [PollFd::new(&fd, PollFlags::empty())];
                match poll(&mut fds, None) {
                    Ok(_) if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) => {
                        let _ = gone.send(());
                        return;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    // Not watchable after all: the writes will tell.
                    _ => return,
                }
            }
        });
    if watcher.is_err() || told.await.is_err() {
        std::future::pending().await
    }
}

#[cfg(not(unix))]
async fn reader_gone() {
    std::future::pending().await
}

/// A state as one text line, or `None` for one not worth a line of its own: an attempt
/// starting (the line before it already said when it would). One line per failure, with
/// the same attempt numbers as the WARN log records.
fn state_text(state: &ConnectionState) -> Option<String> {
    use relink::Status;
    let status = format!("{:?}", state.status).to_lowercase();
    let error = state.last_error.as_deref().unwrap_or("unknown error");
    let text = match state.status {
        Status::Connected => format!(
            "state: connected (socket {}{}{})",
            state.socket_id.as_deref().unwrap_or("?"),
            match state.transport {
                Some(relink::Transport::Polling) => ", over HTTP long-polling",
                _ => "",
            },
            if state.recovered { ", recovered" } else { "" }
        ),
        Status::Connecting | Status::Reconnecting => match state.next_attempt_in {
            Some(next) => {
                let next = humantime::format_duration(std::time::Duration::from_millis(
                    u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
                ));
                let what = if state.attempt > 1 {
                    format!("attempt {} failed", state.attempt - 1)
                } else {
                    "connection lost".to_owned()
                };
                format!(
                    "state: {status} — {what}: {error}; attempt {} in {next}",
                    state.attempt
                )
            }
            // The first attempt has a line (nothing was said before it); later ones were
            // announced by the failure before them.
            None if state.attempt <= 1 && state.last_error.is_none() => format!("state: {status}"),
            None => return None,
        },
        _ => match (&state.end, &state.last_error) {
            (Some(relink::EndReason::ClientDisconnect), _) | (_, None) => {
                format!("state: {status}")
            }
            (_, Some(error)) => format!("state: {status} — {error}"),
        },
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relink::Status;
    use std::time::Duration;

    fn state(
        status: Status,
        attempt: u32,
        next: Option<u64>,
        error: Option<&str>,
    ) -> ConnectionState {
        ConnectionState {
            seq: 1,
            status,
            socket_id: (status == Status::Connected).then(|| "sid".to_owned()),
            attempt,
            last_error: error.map(str::to_owned),
            reason: None,
            cause: None,
            next_attempt_in: next.map(Duration::from_millis),
            recovered: false,
            transport: (status == Status::Connected).then_some(relink::Transport::WebSocket),
            end: None,
        }
    }

    #[test]
    fn one_line_per_failure_with_the_attempt_numbers_of_the_logs() {
        let refused = Some("network error: refused");
        let lines: Vec<Option<String>> = [
            state(Status::Connecting, 1, None, None),
            state(Status::Connecting, 2, Some(984), refused),
            state(Status::Connecting, 2, None, refused),
            state(Status::Connected, 2, None, refused),
            state(Status::Reconnecting, 1, Some(500), refused),
        ]
        .iter()
        .map(state_text)
        .collect();
        assert_eq!(
            lines,
            [
                Some("state: connecting".to_owned()),
                Some(
                    "state: connecting — attempt 1 failed: network error: refused; attempt 2 in 984ms"
                        .to_owned()
                ),
                None,
                Some("state: connected (socket sid)".to_owned()),
                Some(
                    "state: reconnecting — connection lost: network error: refused; attempt 1 in 500ms"
                        .to_owned()
                ),
            ]
        );
    }
}
