//! What goes to stdout: NDJSON lines or plain text, one line per state change or event.

use relink::{ConnectionState, Event, Payload};
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;

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

/// Writes lines to stdout, NDJSON or text.
pub(crate) struct Output {
    json: bool,
    /// The last state line written in text mode: the same line twice is written once.
    last_state: std::sync::Mutex<Option<String>>,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Output {
            json,
            last_state: std::sync::Mutex::new(None),
        }
    }

    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (piped into `head`) is not an error worth dying loudly for.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub(crate) fn state(&self, state: &ConnectionState) {
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
            self.line(&serde_json::to_string(&line).unwrap_or_default());
        } else if let Some(text) = state_text(state) {
            let mut last = self.last_state.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_deref() != Some(text.as_str()) {
                self.line(&text);
                *last = Some(text);
            }
        }
    }

    /// The reader fell behind and `missed` items were dropped (`Incoming::Lagged`).
    pub(crate) fn lagged(&self, missed: u64) {
        if self.json {
            self.line(&serde_json::json!({ "type": "lagged", "missed": missed }).to_string());
        } else {
            self.line(&format!(
                "lagged: {missed} events dropped (not read in time)"
            ));
        }
    }

    pub(crate) fn event(&self, event: &Event) {
        self.payload_line(event.name(), event.args());
    }

    fn payload_line(&self, name: &str, args: &Payload) {
        if self.json {
            let Ok(raw) = serde_json::from_str::<&RawValue>(args.as_json()) else {
                return;
            };
            let line = EventLine {
                r#type: "event",
                name,
                args: raw,
                attachments: args.attachments().iter().map(|a| a.len()).collect(),
            };
            self.line(&serde_json::to_string(&line).unwrap_or_default());
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
            self.line(&text);
        }
    }

    /// Prints an ack's arguments as one JSON array line.
    pub(crate) fn ack(&self, args: &Payload) {
        self.line(args.as_json());
    }
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
