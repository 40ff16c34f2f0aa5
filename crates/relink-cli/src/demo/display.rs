//! What the demo shows while it runs: a live status line on a terminal (indicatif), plain
//! timestamped lines otherwise, and the description of each connection state change.

use super::logs::Counts;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use relink::{ConnectionState, EndReason, Status};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the live status line is redrawn.
pub(crate) const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Where the demo is in its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Servers up, client connecting.
    Starting,
    /// Connected, ticks arriving.
    Flowing,
    /// The gateway answers 503.
    Outage,
    /// The gateway forwards again; the client is still in backoff.
    GatewayBack,
    /// Connected again.
    Recovered,
    /// Shutting everything down.
    Stopping,
}

impl Phase {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Flowing => "events flowing",
            Phase::Outage => "OUTAGE (gateway answers 503)",
            Phase::GatewayBack => "gateway back, relink in backoff",
            Phase::Recovered => "recovered",
            Phase::Stopping => "stopping",
        }
    }
}

/// What the status line shows, shared by the tasks that observe the demo.
pub(crate) struct Live {
    pub(crate) started: Instant,
    phase: Mutex<Phase>,
    /// The last state shown, and when it arrived.
    state: watch::Sender<(ConnectionState, Instant)>,
    ticks: AtomicU64,
    /// relink's WARN and ERROR records so far.
    pub(crate) logs: Arc<Counts>,
}

impl Live {
    pub(crate) fn new(started: Instant, state: ConnectionState, logs: Arc<Counts>) -> Self {
        Live {
            started,
            logs,
            phase: Mutex::new(Phase::Starting),
            state: watch::Sender::new((state, started)),
            ticks: AtomicU64::new(0),
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    /// Records a state once it has been shown.
    pub(crate) fn set_state(&self, state: ConnectionState, at: Instant) {
        self.state.send_replace((state, at));
    }

    /// Waits until `done` holds for a state that has been shown, at most `within`; returns
    /// that state. Waiting on what was shown (rather than on the client directly) keeps the
    /// demo's phase lines after the state line that triggered them.
    pub(crate) async fn wait_state(
        &self,
        within: Duration,
        mut done: impl FnMut(&ConnectionState) -> bool,
    ) -> Option<ConnectionState> {
        let mut rx = self.state.subscribe();
        match tokio::time::timeout(within, rx.wait_for(|(state, _)| done(state))).await {
            Ok(Ok(shown)) => Some(shown.0.clone()),
            _ => None,
        }
    }

    pub(crate) fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// relink's state in a few words, with the countdown to the next retry.
    fn state_summary(&self, now: Instant) -> String {
        let (state, at) = self.state.borrow().clone();
        let name = status_name(state.status);
        match (state.status, state.next_attempt_in) {
            (Status::Connected, _) => name.to_owned(),
            (Status::Connecting | Status::Reconnecting, Some(delay)) => {
                let left = delay.saturating_sub(now.saturating_duration_since(at));
                format!("{name} · attempt {} in {}", state.attempt, secs(left))
            }
            (Status::Connecting | Status::Reconnecting, None) => {
                format!("{name} · attempt {} in flight", state.attempt)
            }
            _ => name.to_owned(),
        }
    }
}

/// The status line, or nothing when stderr is not a terminal.
#[derive(Clone)]
pub(crate) struct Output {
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Output {
    /// A live status line when stderr is a terminal, plain lines otherwise.
    pub(crate) fn new(started: Instant) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(false));
            bar.enable_steady_tick(REDRAW_EVERY);
            bar
        });
        Output { started, bar }
    }

    /// The status line, for writing logs around it.
    pub(crate) fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    pub(crate) fn is_live(&self) -> bool {
        self.bar.is_some()
    }

    /// One timestamped line on stderr (above the status line when there is one).
    pub(crate) fn line(&self, text: &str) {
        let line = format!("[{:>5.1}s] {text}", self.started.elapsed().as_secs_f64());
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Redraws the status line from `live`.
    pub(crate) fn redraw(&self, live: &Live) {
        let Some(bar) = &self.bar else {
            return;
        };
        let now = Instant::now();
        let phase = live.phase();
        bar.set_style(style(matches!(phase, Phase::Outage | Phase::GatewayBack)));
        bar.set_prefix(format!(
            "[{:>5.1}s] {}",
            now.saturating_duration_since(live.started).as_secs_f64(),
            phase.label()
        ));
        bar.set_message(format!(
            "relink: {} │ ticks {} │ WARN {} ERROR {}",
            live.state_summary(now),
            live.ticks(),
            live.logs.warn(),
            live.logs.error()
        ));
    }

    /// Removes the status line.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn style(alarm: bool) -> ProgressStyle {
    let template = if alarm {
        "{spinner:.red} {prefix:.bold.red} │ {wide_msg}"
    } else {
        "{spinner:.green} {prefix:.bold} │ {wide_msg}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// `1.3s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Connecting => "connecting",
        Status::Connected => "connected",
        Status::Reconnecting => "reconnecting",
        Status::Disconnected => "disconnected",
        Status::Failed => "failed",
        _ => "unknown",
    }
}

/// What one state change meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// An attempt started.
    Trying { attempt: u32 },
    /// An attempt failed; another follows after the delay.
    Failed {
        attempt: u32,
        reason: &'static str,
        next_in: Duration,
    },
    /// An established connection dropped.
    Lost {
        reason: &'static str,
        next_in: Duration,
    },
    /// Connected to the namespace.
    Connected { attempt: u32 },
    /// The connection held for the stable period: backoff reset.
    Stable,
    /// The client ended.
    Ended,
    /// Anything else (a field changed without a status change).
    Other,
}

/// Turns the stream of states into [`Change`]s and the lines that describe them.
#[derive(Default)]
pub(crate) struct Narrator {
    prev: Option<ConnectionState>,
    /// The attempt number of the last attempt that started. The state published after a
    /// failure already carries the number of the *next* attempt.
    tried: u32,
}

impl Narrator {
    pub(crate) fn observe(&mut self, state: &ConnectionState) -> (Change, String) {
        let was_connected = self
            .prev
            .as_ref()
            .is_some_and(|p| p.status == Status::Connected);
        let name = status_name(state.status);
        let reason = state.reason.map_or("unknown", relink::Reason::as_str);
        let (change, text) = match (state.status, state.next_attempt_in) {
            (Status::Connecting | Status::Reconnecting, None) => {
                self.tried = state.attempt;
                (
                    Change::Trying {
                        attempt: state.attempt,
                    },
                    format!("{name} — attempt {}", state.attempt),
                )
            }
            (Status::Connecting | Status::Reconnecting, Some(next_in)) if was_connected => (
                Change::Lost { reason, next_in },
                format!(
                    "{name} — connection lost ({reason}), next attempt in {}",
                    secs(next_in)
                ),
            ),
            (Status::Connecting | Status::Reconnecting, Some(next_in)) => {
                let attempt = if self.tried > 0 {
                    self.tried
                } else {
                    state.attempt.saturating_sub(1)
                };
                (
                    Change::Failed {
                        attempt,
                        reason,
                        next_in,
                    },
                    format!(
                        "{name} — attempt {attempt} failed ({reason}), next in {}",
                        secs(next_in)
                    ),
                )
            }
            (Status::Connected, _) if !was_connected => (
                Change::Connected {
                    attempt: state.attempt,
                },
                format!(
                    "connected — attempt {}{}",
                    state.attempt,
                    if state.recovered {
                        ", session recovered"
                    } else {
                        ""
                    }
                ),
            ),
            (Status::Connected, _)
                if state.attempt == 0 && self.prev.as_ref().is_some_and(|p| p.attempt != 0) =>
            {
                (
                    Change::Stable,
                    "connected — connection stable, backoff reset".to_owned(),
                )
            }
            (Status::Disconnected | Status::Failed, _) => {
                let end = match state.end {
                    Some(EndReason::ClientDisconnect) => "client disconnect",
                    Some(EndReason::ServerDisconnect) => "server disconnect",
                    Some(EndReason::Unauthorized) => "credentials rejected",
                    Some(EndReason::EmptyToken) => "empty token",
                    Some(EndReason::Configuration) => "configuration",
                    _ => "ended",
                };
                let detail = match (&state.status, &state.last_error) {
                    (Status::Failed, Some(error)) => format!(": {error}"),
                    _ => String::new(),
                };
                (Change::Ended, format!("{name} ({end}){detail}"))
            }
            _ => (Change::Other, format!("{name} — attempt {}", state.attempt)),
        };
        self.prev = Some(state.clone());
        (change, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: Status, attempt: u32, next: Option<u64>) -> ConnectionState {
        ConnectionState {
            seq: 0,
            status,
            socket_id: None,
            attempt,
            last_error: None,
            reason: next.map(|_| relink::Reason::Http5xx),
            cause: None,
            next_attempt_in: next.map(Duration::from_millis),
            recovered: false,
            transport: (status == Status::Connected).then_some(relink::Transport::WebSocket),
            end: None,
        }
    }

    #[test]
    fn narrates_an_outage() {
        let mut n = Narrator::default();
        let steps = [
            state(Status::Connecting, 1, None),
            state(Status::Connected, 1, None),
            state(Status::Connected, 0, None),
            state(Status::Reconnecting, 1, Some(300)),
            state(Status::Reconnecting, 1, None),
            state(Status::Reconnecting, 2, Some(1300)),
            state(Status::Reconnecting, 2, None),
            state(Status::Connected, 2, None),
            state(Status::Connected, 0, None),
        ];
        let lines: Vec<String> = steps.iter().map(|s| n.observe(s).1).collect();
        assert_eq!(
            lines,
            [
                "connecting — attempt 1",
                "connected — attempt 1",
                "connected — connection stable, backoff reset",
                "reconnecting — connection lost (http_5xx), next attempt in 0.3s",
                "reconnecting — attempt 1",
                "reconnecting — attempt 1 failed (http_5xx), next in 1.3s",
                "reconnecting — attempt 2",
                "connected — attempt 2",
                "connected — connection stable, backoff reset",
            ]
        );
    }
}
