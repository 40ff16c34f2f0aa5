//! `relink demo`: an outage and its recovery, live, with nothing to set up.
//!
//! An embedded Socket.IO server ([`server`]) sits behind a fault-injecting gateway
//! ([`relink_testkit::gateway`]); a relink client connects through the gateway. Events flow,
//! then the gateway cuts the link and answers 503 for `--outage`, then forwards again. The
//! client's state changes are shown live ([`display`]) and relink's WARN/ERROR records are
//! counted ([`logs`]) for the summary printed on stdout at the end.

mod display;
mod logs;
mod server;

use crate::cli::DemoArgs;
use crate::exit::CliError;
use display::{Change, Live, Narrator, Output, Phase, REDRAW_EVERY, secs};
use relink::{Client, ConnectionState, Events, Incoming, Payload, Status};
use relink_testkit::gateway::{Gateway, Mode};
use server::DemoServer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Reconnect policy: short enough for a demo, shaped like the real thing.
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
const STABLE_AFTER: Duration = Duration::from_secs(2);
/// relink's default: the single ERROR of an outage comes with its 5th failed attempt.
const ESCALATE_AFTER: u32 = 5;
/// How long events flow before the outage (at least until the connection is stable).
const FLOW_FOR: Duration = Duration::from_secs(3);
/// How long events flow after the recovered connection is stable.
const AFTER_RECOVERY: Duration = Duration::from_secs(2);
/// Bounds on waits that depend on the client; none is expected to come close.
const FIRST_CONNECT_WITHIN: Duration = Duration::from_secs(10);
const LINK_DOWN_WITHIN: Duration = Duration::from_secs(5);
/// The client may be sleeping up to `BACKOFF_MAX` when the gateway comes back.
const RECONNECT_WITHIN: Duration = Duration::from_secs(20);
const STABLE_WITHIN: Duration = Duration::from_secs(10);
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the observing tasks get to see the client's last state before being aborted.
const OBSERVERS_GRACE: Duration = Duration::from_secs(2);
const GATEWAY_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn run(
    args: DemoArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let started = Instant::now();
    let out = Output::new(started);
    let counts = logs::install(args.log_format, out.bar());

    // A fresh secret per run: the server accepts nothing else, and it is never shown.
    let token: Arc<str> = format!("demo-{:032x}", rand::random::<u128>()).into();
    let server = match DemoServer::start(Arc::clone(&token)).await {
        Ok(server) => server,
        Err(e) => {
            out.finish();
            return Err(CliError::Other(format!(
                "cannot start the embedded server: {e}"
            )));
        }
    };
    let gateway = match Gateway::start(server.addr()).await {
        Ok(gateway) => gateway,
        Err(e) => {
            server.stop().await;
            out.finish();
            return Err(CliError::Other(format!("cannot start the gateway: {e}")));
        }
    };
    out.line(&format!(
        "embedded Socket.IO server on {}, gateway in front of it on {}",
        server.addr(),
        gateway.addr()
    ));
    let connected = Client::builder(gateway.url())
        .token(&*token)
        .backoff_initial(BACKOFF_INITIAL)
        .backoff_max(BACKOFF_MAX)
        .stable_after(STABLE_AFTER)
        .escalate_after(ESCALATE_AFTER)
        .connect();
    let (client, events) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            stop_servers(gateway, server).await;
            out.finish();
            return Err(e.into());
        }
    };
    out.line(&format!(
        "relink client → {} (backoff {}..{}, stable after {}, ERROR after {ESCALATE_AFTER} failed attempts)",
        gateway.url(),
        secs(BACKOFF_INITIAL),
        secs(BACKOFF_MAX),
        secs(STABLE_AFTER)
    ));

    let live = Arc::new(Live::new(started, client.state(), counts));
    let observers = Observers::start(&client, events, &live, &out);
    let mut timeline = Timeline::default();
    let outcome = tokio::select! {
        result = script(args.outage, &client, &gateway, &live, &out, &mut timeline) => result,
        // Asked to stop: a clean end, with the summary of what happened so far.
        () = stop => Ok(()),
    };

    live.set_phase(Phase::Stopping);
    client.disconnect().await;
    let history = observers.stop().await;
    let echo = match timeline.outage_echo.take() {
        Some(task) => join_within(task, OBSERVERS_GRACE).await.flatten(),
        None => None,
    };
    drop(client);
    let gateway_503s = gateway.stats().status_answers;
    stop_servers(gateway, server).await;
    out.finish();

    let summary = Summary {
        outage: timeline.outage(),
        attempts: Attempts::count(&history, &timeline),
        warn: live.logs.warn(),
        error: live.logs.error(),
        gateway_503s,
        reconnect: timeline.reconnect(),
        ticks: live.ticks(),
        first_echo: timeline.first_echo,
        outage_echo: echo,
        outage_echo_sent: timeline.outage_echo_sent,
    };
    print!("{}", summary.render());
    outcome
}

/// When each step of the script happened.
#[derive(Default)]
struct Timeline {
    cut_at: Option<Instant>,
    forward_at: Option<Instant>,
    reconnected_at: Option<Instant>,
    first_echo: Option<Duration>,
    outage_echo_sent: bool,
    /// Resolves with how long the echo emitted during the outage took to be acked, if it was.
    outage_echo: Option<JoinHandle<Option<Duration>>>,
}

impl Timeline {
    fn outage(&self) -> Option<Duration> {
        Some(self.forward_at?.saturating_duration_since(self.cut_at?))
    }

    fn reconnect(&self) -> Option<Duration> {
        Some(
            self.reconnected_at?
                .saturating_duration_since(self.forward_at?),
        )
    }
}

/// The demo's script: flow, outage, recovery, flow.
/// Waits until connected; the client ending first, or `within` passing, is the error.
async fn wait_connected(live: &Live, within: Duration, failure: &str) -> Result<(), CliError> {
    let state = live
        .wait_state(within, |s| {
            s.status == Status::Connected || s.status.is_terminal()
        })
        .await;
    match state {
        Some(s) if s.status == Status::Connected => Ok(()),
        Some(s) => Err(CliError::from_state(&s)),
        None => Err(CliError::Other(format!(
            "{failure} within {}",
            secs(within)
        ))),
    }
}

async fn script(
    outage: Duration,
    client: &Client,
    gateway: &Gateway,
    live: &Live,
    out: &Output,
    timeline: &mut Timeline,
) -> Result<(), CliError> {
    wait_connected(
        live,
        FIRST_CONNECT_WITHIN,
        "could not connect to the embedded server",
    )
    .await?;
    live.set_phase(Phase::Flowing);
    let flowing_since = Instant::now();
    out.line("── events flowing: the server sends a \"tick\" every 500 ms");
    timeline.first_echo = echo_round_trip(client).await;
    if let Some(rtt) = timeline.first_echo {
        out.line(&format!("emit \"echo\" → acked in {}", short(rtt)));
    }
    tokio::time::sleep_until((flowing_since + FLOW_FOR).into()).await;
    // Cut a connection that has held: what follows is an outage, not a flapping link.
    let _ = live
        .wait_state(STABLE_WITHIN, |s| {
            s.status != Status::Connected || s.attempt == 0
        })
        .await;

    gateway.set_mode(Mode::Status {
        code: 503,
        retry_after: None,
    });
    let cut_at = Instant::now();
    gateway.reset_all();
    timeline.cut_at = Some(cut_at);
    live.set_phase(Phase::Outage);
    out.line(&format!(
        "── OUTAGE: the gateway cut the live link and answers HTTP 503 for {}",
        secs(outage)
    ));
    if live
        .wait_state(LINK_DOWN_WITHIN, |s| s.status != Status::Connected)
        .await
        .is_some()
    {
        timeline.outage_echo = Some(echo_through_outage(client.clone(), out.clone()));
        timeline.outage_echo_sent = true;
        out.line("emit \"echo\" while disconnected: relink keeps it in its outbox");
    }
    tokio::time::sleep_until((cut_at + outage).into()).await;

    gateway.set_mode(Mode::Forward);
    let forward_at = Instant::now();
    timeline.forward_at = Some(forward_at);
    live.set_phase(Phase::GatewayBack);
    out.line("── the gateway forwards again: relink reconnects on its own at its next attempt");
    wait_connected(
        live,
        RECONNECT_WITHIN,
        "relink did not reconnect after the gateway recovered",
    )
    .await?;
    let reconnected_at = Instant::now();
    timeline.reconnected_at = Some(reconnected_at);
    live.set_phase(Phase::Recovered);
    out.line(&format!(
        "── recovered: connected again {} after the gateway came back",
        secs(reconnected_at.saturating_duration_since(forward_at))
    ));
    let _ = live
        .wait_state(STABLE_WITHIN, |s| {
            s.status != Status::Connected || s.attempt == 0
        })
        .await;
    tokio::time::sleep(AFTER_RECOVERY).await;
    out.line("── done: disconnecting");
    Ok(())
}

/// One acked `"echo"`: the round trip, if it was acked in time.
async fn echo_round_trip(client: &Client) -> Option<Duration> {
    let payload = Payload::json("hello").ok()?;
    let sent = Instant::now();
    client
        .emit_with_ack("echo", payload, ECHO_TIMEOUT)
        .await
        .ok()
        .map(|_| sent.elapsed())
}

/// Emits `"echo"` while disconnected; resolves with how long it took to be acked.
fn echo_through_outage(client: Client, out: Output) -> JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let payload = Payload::json("sent during the outage").ok()?;
        let sent = Instant::now();
        // Waits in the outbox while disconnected; each try gets ECHO_TIMEOUT once written.
        match client
            .emit_with_retries("echo", payload, ECHO_TIMEOUT, 2)
            .await
        {
            Ok(_) => {
                let took = sent.elapsed();
                out.line(&format!(
                    "the \"echo\" emitted during the outage was delivered and acked, {} after it was emitted",
                    secs(took)
                ));
                Some(took)
            }
            Err(e) => {
                out.line(&format!(
                    "the \"echo\" emitted during the outage failed: {e}"
                ));
                None
            }
        }
    })
}

/// `0.9 ms` under a second, `1.3s` from there.
fn short(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        secs(d)
    }
}

/// Awaits `task` at most `within`, then aborts it.
async fn join_within<T>(mut task: JoinHandle<T>, within: Duration) -> Option<T> {
    match tokio::time::timeout(within, &mut task).await {
        Ok(result) => result.ok(),
        Err(_) => {
            task.abort();
            None
        }
    }
}

async fn stop_servers(gateway: Gateway, server: DemoServer) {
    // Dropping the gateway aborts whatever its shutdown did not finish.
    let _ = tokio::time::timeout(GATEWAY_GRACE, gateway.shutdown()).await;
    server.stop().await;
}

/// The tasks that watch the client: state changes, events, and the status line.
struct Observers {
    states: JoinHandle<Vec<(Instant, Change)>>,
    events: JoinHandle<()>,
    render: JoinHandle<()>,
    stop_render: watch::Sender<bool>,
}

impl Observers {
    fn start(client: &Client, events: Events, live: &Arc<Live>, out: &Output) -> Self {
        // Subscribe before reading the snapshot, so no transition falls in between.
        let changes = client.state_changes();
        let snapshot = client.state();
        let (stop_render, stop_rx) = watch::channel(false);
        Observers {
            states: tokio::spawn(narrate(changes, snapshot, Arc::clone(live), out.clone())),
            events: tokio::spawn(count_ticks(events, Arc::clone(live))),
            render: tokio::spawn(render(out.clone(), Arc::clone(live), stop_rx)),
            stop_render,
        }
    }

    /// Waits (bounded) for the client's last state and events, stops the status line, and
    /// returns what the state changes meant and when.
    async fn stop(self) -> Vec<(Instant, Change)> {
        let history = join_within(self.states, OBSERVERS_GRACE)
            .await
            .unwrap_or_default();
        let _ = join_within(self.events, OBSERVERS_GRACE).await;
        self.stop_render.send_replace(true);
        let _ = join_within(self.render, OBSERVERS_GRACE).await;
        history
    }
}

/// Prints one line per state change and records what it meant, until the client ends.
async fn narrate(
    mut changes: broadcast::Receiver<ConnectionState>,
    snapshot: ConnectionState,
    live: Arc<Live>,
    out: Output,
) -> Vec<(Instant, Change)> {
    let mut narrator = Narrator::default();
    let mut history = Vec::new();
    // A transition published before we subscribed is only in the snapshot; the changes then
    // skip everything up to the snapshot's `seq` (0: nothing published yet).
    let mut shown = snapshot.seq;
    let mut errors = live.logs.error();
    if snapshot.seq > 0 {
        let now = Instant::now();
        let (change, text) = narrator.observe(&snapshot);
        out.line(&text);
        live.set_state(snapshot, now);
        history.push((now, change));
    }
    loop {
        let state = match changes.recv().await {
            Ok(state) => state,
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                out.line(&format!("({skipped} state changes not shown)"));
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if state.seq <= shown {
            continue;
        }
        shown = state.seq;
        let now = Instant::now();
        let (change, text) = narrator.observe(&state);
        out.line(&text);
        // relink logs before it publishes: an ERROR record for this failure is counted now.
        if live.logs.error() > errors {
            errors = live.logs.error();
            out.line(
                "relink logged ERROR \"connection attempts keep failing\": once for this \
                 outage, further failures stay at WARN",
            );
        }
        let ended = state.status.is_terminal();
        live.set_state(state, now);
        history.push((now, change));
        if ended {
            break;
        }
    }
    history
}

/// Counts `"tick"` events until the client ends.
async fn count_ticks(mut events: Events, live: Arc<Live>) {
    while let Some(item) = events.next().await {
        if let Incoming::Event(event) = item
            && event.name() == "tick"
        {
            live.tick();
        }
    }
}

/// Redraws the status line ~10×/s; without one, prints the tick count once a second while
/// events flow.
async fn render(out: Output, live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    let period = if out.is_live() {
        REDRAW_EVERY
    } else {
        Duration::from_secs(1)
    };
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut shown = 0;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        if out.is_live() {
            out.redraw(&live);
            continue;
        }
        let phase = live.phase();
        let ticks = live.ticks();
        if ticks != shown && matches!(phase, Phase::Flowing | Phase::Recovered) {
            out.line(&format!("{}: ticks received {ticks}", phase.label()));
            shown = ticks;
        }
    }
}

/// Connection attempts between the cut and the reconnection.
#[derive(Debug, Default, PartialEq, Eq)]
struct Attempts {
    tried: u32,
    failed: u32,
    /// Why they failed, with how often, in order of first appearance.
    reasons: Vec<(&'static str, u32)>,
}

impl Attempts {
    fn count(history: &[(Instant, Change)], timeline: &Timeline) -> Self {
        let mut attempts = Attempts::default();
        let Some(from) = timeline.cut_at else {
            return attempts;
        };
        let until = timeline.reconnected_at;
        for (at, change) in history {
            if *at < from || until.is_some_and(|until| *at > until) {
                continue;
            }
            match change {
                Change::Trying { .. } => attempts.tried += 1,
                Change::Failed { reason, .. } => {
                    attempts.failed += 1;
                    match attempts.reasons.iter_mut().find(|(r, _)| r == reason) {
                        Some((_, n)) => *n += 1,
                        None => attempts.reasons.push((reason, 1)),
                    }
                }
                _ => {}
            }
        }
        attempts
    }
}

/// The numbers printed at the end.
struct Summary {
    outage: Option<Duration>,
    attempts: Attempts,
    warn: u64,
    error: u64,
    gateway_503s: u64,
    reconnect: Option<Duration>,
    ticks: u64,
    first_echo: Option<Duration>,
    outage_echo_sent: bool,
    /// How long the echo emitted during the outage took to be acked, if it was.
    outage_echo: Option<Duration>,
}

impl Summary {
    fn render(&self) -> String {
        let na = || "n/a".to_owned();
        let mut rows: Vec<(&str, String, String)> = Vec::new();
        rows.push((
            "outage (gateway answering 503)",
            self.outage.map_or_else(na, secs),
            String::new(),
        ));
        let reasons = self
            .attempts
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n}× {reason}"))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push((
            "connection attempts in the outage",
            self.attempts.tried.to_string(),
            match (self.attempts.failed, self.reconnect.is_some()) {
                (0, _) => String::new(),
                (n, true) => format!("{n} failed ({reasons}), then one connected"),
                (n, false) => format!("{n} failed ({reasons})"),
            },
        ));
        rows.push((
            "gateway 503 answers",
            self.gateway_503s.to_string(),
            String::new(),
        ));
        rows.push((
            "WARN records",
            self.warn.to_string(),
            "failed attempts and the lost connection".to_owned(),
        ));
        rows.push((
            "ERROR records",
            self.error.to_string(),
            format!("at most one per outage, after {ESCALATE_AFTER} failed attempts in a row"),
        ));
        rows.push((
            "reconnected after gateway recovery",
            self.reconnect.map_or_else(na, secs),
            if self.reconnect.is_some() {
                "the backoff delay left when the gateway came back".to_owned()
            } else {
                String::new()
            },
        ));
        rows.push(("ticks received", self.ticks.to_string(), String::new()));
        if let Some(rtt) = self.first_echo {
            rows.push(("echo round trip", short(rtt), String::new()));
        }
        if self.outage_echo_sent {
            let (value, note) = match self.outage_echo {
                Some(took) => (
                    "acked".to_owned(),
                    format!(
                        "{} after it was emitted: kept in the outbox, sent on reconnect",
                        secs(took)
                    ),
                ),
                None => ("not acked".to_owned(), String::new()),
            };
            rows.push(("echo emitted during the outage", value, note));
        }
        let mut text = String::from("\nrelink demo: summary\n");
        for (label, value, note) in rows {
            let line = if note.is_empty() {
                format!("  {label:<36} {value}")
            } else {
                format!("  {label:<36} {value:<6} ({note})")
            };
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_between_the_cut_and_the_reconnection() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let failed = |reason| Change::Failed {
            attempt: 1,
            reason,
            next_in: Duration::ZERO,
        };
        let history = vec![
            (at(0), Change::Trying { attempt: 1 }),
            (at(10), Change::Connected { attempt: 1 }),
            (
                at(110),
                Change::Lost {
                    reason: "transport_close",
                    next_in: Duration::ZERO,
                },
            ),
            (at(120), Change::Trying { attempt: 1 }),
            (at(130), failed("http_5xx")),
            (at(140), Change::Trying { attempt: 2 }),
            (at(150), failed("http_5xx")),
            (at(160), Change::Trying { attempt: 3 }),
            (at(170), Change::Connected { attempt: 3 }),
            (at(300), Change::Trying { attempt: 1 }),
        ];
        let timeline = Timeline {
            cut_at: Some(at(100)),
            reconnected_at: Some(at(170)),
            ..Timeline::default()
        };
        assert_eq!(
            Attempts::count(&history, &timeline),
            Attempts {
                tried: 3,
                failed: 2,
                reasons: vec![("http_5xx", 2)],
            }
        );
    }

    #[test]
    fn summary_has_the_numbers_the_readme_talks_about() {
        let summary = Summary {
            outage: Some(Duration::from_secs(12)),
            attempts: Attempts {
                tried: 7,
                failed: 6,
                reasons: vec![("http_5xx", 6)],
            },
            warn: 7,
            error: 1,
            gateway_503s: 6,
            reconnect: Some(Duration::from_millis(1300)),
            ticks: 31,
            first_echo: None,
            outage_echo_sent: false,
            outage_echo: None,
        }
        .render();
        for expected in [
            "outage (gateway answering 503)       12.0s",
            "connection attempts in the outage    7      (6 failed (6× http_5xx), then one connected)",
            "WARN records                         7",
            "ERROR records                        1",
            "reconnected after gateway recovery   1.3s",
            "ticks received                       31",
        ] {
            assert!(summary.contains(expected), "{expected:?} in\n{summary}");
        }
    }
}
