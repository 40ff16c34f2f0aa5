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
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Output { json }
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
                reason: state.reason,
                next_attempt_ms: state
                    .next_attempt_in
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            self.line(&serde_json::to_string(&line).unwrap_or_default());
        } else {
            let mut text = format!("state: {:?}", state.status).to_lowercase();
            if let Some(id) = &state.socket_id {
                text.push_str(&format!(
                    " (socket {id}{})",
                    if state.recovered { ", recovered" } else { "" }
                ));
            }
            if let Some(next) = state.next_attempt_in {
                text.push_str(&format!(
                    " — attempt {} in {}",
                    state.attempt,
                    humantime::format_duration(std::time::Duration::from_millis(
                        next.as_millis() as u64
                    ))
                ));
            }
            if let Some(error) = &state.last_error
                && state.status != relink::Status::Connected
            {
                text.push_str(&format!(" — last error: {error}"));
            }
            self.line(&text);
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
