//! `relink listen`: stay connected, print what happens, optionally emit stdin lines.

use crate::cli::ListenArgs;
use crate::connect::builder;
use crate::exit::CliError;
use crate::output::{Output, StdoutClosed};
use crate::stdin::{Delivery, StdinEmits};
use relink::{Client, ConnectionState, Incoming, Status};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// How long, after a stop signal, the lines already printed may take to reach stdout (while
/// the client disconnects): a stalled reader must not hold the exit.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What woke the loop.
enum Step {
    State(Result<ConnectionState, RecvError>),
    Incoming(Option<Incoming>),
}

/// Why the loop ended.
enum End {
    /// SIGINT or SIGTERM.
    Stopped,
    /// Nothing more can be printed: stdout's reader went away (or stdout failed, which
    /// [`Output::finish`] reports).
    StdoutClosed,
    /// The client ended.
    Client(CliError),
}

/// States wait here for the events that came before them. A state is published as soon as
/// the connection changes, while the events of the link before it may still wait to be
/// printed (a slow stdout, a backlog): a state that begins or ends a connection is printed
/// once the events reach the same point (`Incoming::Connected` / `Disconnected`), so
/// `connected` never comes after that connection's first event, nor `reconnecting` before
/// the last one.
#[derive(Default)]
struct States {
    pending: VecDeque<(ConnectionState, bool)>,
    /// Whether the last state queued is `connected` (to tell which states are marks).
    connected: bool,
    /// Marks (a connection begun or ended) read among the events, and printed among the
    /// states.
    told: u64,
    printed: u64,
    /// Marks may have been dropped (`--overflow drop`) or states missed: no more waiting.
    ungated: bool,
}

impl States {
    fn queue(&mut self, state: ConnectionState) {
        let connected = state.status == Status::Connected;
        let mark = connected != self.connected;
        self.connected = connected;
        self.pending.push_back((state, mark));
    }

    /// Queues the states already published and not received yet: a state is published
    /// before the events that follow it are handed over, whichever branch woke first.
    fn receive(&mut self, rx: &mut broadcast::Receiver<ConnectionState>, client: &Client) {
        loop {
            match rx.try_recv() {
                Ok(state) => self.queue(state),
                Err(TryRecvError::Lagged(_)) => {
                    self.ungated = true;
                    self.queue(client.state());
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    /// Prints what may be printed now; ends the loop at a terminal state.
    async fn print(&mut self, out: &mut Output, all: bool) -> Result<(), End> {
        while let Some((_, mark)) = self.pending.front() {
            if *mark && self.printed >= self.told && !self.ungated && !all {
                return Ok(());
            }
            let Some((state, mark)) = self.pending.pop_front() else {
                break;
            };
            self.printed += u64::from(mark);
            out.state(&state).await?;
            if state.status.is_terminal() {
                return Err(End::Client(CliError::from_state(&state)));
            }
        }
        Ok(())
    }
}

impl From<StdoutClosed> for End {
    fn from(_: StdoutClosed) -> Self {
        End::StdoutClosed
    }
}

pub(crate) async fn run(
    args: ListenArgs,
    token: Option<String>,
    stop: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let ack_with = args.ack_with.as_deref().map(ack_arguments).transpose()?;
    let mut builder = builder(args.url.as_deref(), token, &args.connect)?
        .backoff_initial(args.backoff_initial)
        .backoff_max(args.backoff_max)
        .escalate_after(args.escalate_after)
        .overflow(args.overflow.into());
    if let Some(attempts) = args.reconnection_attempts {
        builder = builder.reconnection_attempts(attempts);
    }
    if args.no_reconnect {
        builder = builder.reconnection(false);
    }
    let (client, mut events) = builder.connect()?;
    let mut out = Output::start(args.json);
    let mut states = client.state_changes();
    let mut waiting = States::default();
    let delivery = Delivery {
        ack_timeout: args
            .ack_timeout
            .or(args.retries.map(|_| Duration::from_secs(5))),
        retries: args.retries.unwrap_or(0),
    };
    let stdin = args
        .stdin
        .then(|| StdinEmits::start(client.clone(), delivery));
    let mut stop = std::pin::pin!(stop);
    // The first line is the state the client starts in.
    let mut next = Some(Step::State(Ok(client.state())));
    let end = loop {
        let step = match next.take() {
            Some(step) => step,
            None => tokio::select! {
                () = &mut stop => break End::Stopped,
                // Noticed even while the server is quiet: `listen | head -n 3` ends with head.
                () = out.closed() => break End::StdoutClosed,
                state = states.recv() => Step::State(state),
                incoming = events.next() => Step::Incoming(incoming),
            },
        };
        // Printing waits while stdout is behind, and nothing more is taken from `events`
        // meanwhile: a slow reader of stdout slows the server down (the default
        // backpressure) instead of losing events. Only a signal cuts that wait short.
        let printed = tokio::select! {
            () = &mut stop => break End::Stopped,
            printed = print(step, &mut out, (&mut waiting, &mut states), &client, ack_with.as_ref()) => printed,
        };
        if let Err(end) = printed {
            break end;
        }
    };
    if let Some(stdin) = stdin {
        stdin.stop().await;
    }
    // Sends what was queued, then DISCONNECT and a WebSocket close; meanwhile the lines
    // already printed reach stdout.
    let stopped = matches!(end, End::Stopped);
    let ((), written) = tokio::join!(client.disconnect(), drain(out, stop, stopped));
    match end {
        End::Client(e) => Err(e),
        End::Stopped | End::StdoutClosed => written,
    }
}

/// Prints what woke the loop; `Err` when that ends it.
async fn print(
    step: Step,
    out: &mut Output,
    (states, published): (&mut States, &mut broadcast::Receiver<ConnectionState>),
    client: &Client,
    ack_with: Option<&relink::Payload>,
) -> Result<(), End> {
    if matches!(step, Step::Incoming(_)) {
        states.receive(published, client);
    }
    match step {
        Step::State(Ok(state)) => states.queue(state),
        Step::State(Err(RecvError::Lagged(_))) => {
            states.ungated = true;
            states.queue(client.state());
        }
        Step::State(Err(RecvError::Closed)) => {
            states.print(out, true).await?;
            return Err(End::Client(CliError::from_state(&client.state())));
        }
        Step::Incoming(Some(Incoming::Event(mut event))) => {
            // The answer does not wait for stdout.
            if let Some(answer) = ack_with {
                event.ack(answer.clone());
            }
            states.print(out, false).await?;
            out.event(&event).await?;
        }
        Step::Incoming(Some(Incoming::Connected { .. } | Incoming::Disconnected { .. })) => {
            states.told += 1;
        }
        Step::Incoming(Some(Incoming::Lagged { missed })) => {
            // What was dropped may have held the marks states wait for.
            states.ungated = true;
            states.print(out, false).await?;
            out.lagged(missed).await?;
        }
        Step::Incoming(Some(_)) => {}
        // The client ended: its last states (the terminal one) are printed first, whichever
        // of the two channels said so first.
        Step::Incoming(None) => {
            states.print(out, true).await?;
            return Err(End::Client(CliError::from_state(&client.state())));
        }
    }
    states.print(out, false).await
}

/// Waits for the lines printed so far to be written: for [`DRAIN_GRACE`] after a stop
/// signal, else until they are written or a signal comes.
async fn drain(
    out: Output,
    stop: Pin<&mut impl Future<Output = ()>>,
    stopped: bool,
) -> Result<(), CliError> {
    if stopped {
        return tokio::time::timeout(DRAIN_GRACE, out.finish())
            .await
            .unwrap_or(Ok(()));
    }
    tokio::select! {
        written = out.finish() => written,
        () = stop => Ok(()),
    }
}

/// `--ack-with`: a JSON array is the argument list; any other JSON value the only argument.
fn ack_arguments(text: &str) -> Result<relink::Payload, CliError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CliError::Usage(format!("--ack-with is not valid JSON ({e})")))?;
    let payload = match value {
        serde_json::Value::Array(items) => items
            .iter()
            .try_fold(relink::Payload::new(), |payload, item| payload.with(item)),
        other => relink::Payload::json(&other),
    };
    payload.map_err(|e| CliError::Usage(format!("--ack-with: {e}")))
}
