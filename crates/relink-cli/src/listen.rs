//! `relink listen`: stay connected, print what happens, optionally emit stdin lines.

use crate::cli::ListenArgs;
use crate::connect::builder;
use crate::exit::CliError;
use crate::output::Output;
use crate::stdin::{Delivery, StdinEmits};
use relink::{Client, Incoming};
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub(crate) async fn run(
    args: ListenArgs,
    token: Option<String>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let ack_with = args.ack_with.as_deref().map(ack_arguments).transpose()?;
    let mut builder = builder(args.url.as_deref(), token, &args.connect)?
        .backoff_initial(args.backoff_initial)
        .backoff_max(args.backoff_max)
        .escalate_after(args.escalate_after);
    if let Some(attempts) = args.reconnection_attempts {
        builder = builder.reconnection_attempts(attempts);
    }
    if args.no_reconnect {
        builder = builder.reconnection(false);
    }
    let (client, mut events) = builder.connect()?;
    let out = Output::new(args.json);
    let mut states = client.state_changes();
    out.state(&client.state());
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
    let result = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            state = states.recv() => match state {
                Ok(state) => {
                    out.state(&state);
                    if state.status.is_terminal() {
                        break Err(CliError::from_state(&state));
                    }
                }
                Err(RecvError::Lagged(_)) => out.state(&client.state()),
                Err(RecvError::Closed) => break Err(CliError::from_state(&client.state())),
            },
            incoming = events.next() => match incoming {
                Some(Incoming::Event(mut event)) => {
                    // A state is published before the events that follow it are handed
                    // over: printing the states already published first keeps the order
                    // (no event before `connected`), whichever branch woke first.
                    if let Some(end) = print_published_states(&mut states, &client, &out) {
                        break Err(end);
                    }
                    out.event(&event);
                    if let Some(answer) = &ack_with {
                        event.ack(answer.clone());
                    }
                }
                Some(Incoming::Lagged { missed }) => out.lagged(missed),
                Some(_) => {}
                // The client ended: its last states (the terminal one) are printed first,
                // whichever of the two channels said so first.
                None => {
                    let end = print_published_states(&mut states, &client, &out);
                    break Err(end.unwrap_or_else(|| CliError::from_state(&client.state())));
                }
            },
        }
    };
    if let Some(stdin) = stdin {
        stdin.stop().await;
    }
    // Sends what was queued, then DISCONNECT and a WebSocket close.
    client.disconnect().await;
    result
}

/// Prints the states published and not read yet; the error to end with if one is terminal.
fn print_published_states(
    states: &mut tokio::sync::broadcast::Receiver<relink::ConnectionState>,
    client: &Client,
    out: &Output,
) -> Option<CliError> {
    loop {
        match states.try_recv() {
            Ok(state) => {
                out.state(&state);
                if state.status.is_terminal() {
                    return Some(CliError::from_state(&state));
                }
            }
            Err(TryRecvError::Lagged(_)) => out.state(&client.state()),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
        }
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
