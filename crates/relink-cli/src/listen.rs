//! `relink listen`: stay connected, print what happens, optionally emit stdin lines.

use crate::cli::ListenArgs;
use crate::connect::{builder, parse_emit_line};
use crate::exit::CliError;
use crate::output::Output;
use relink::{Client, Incoming};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub(crate) async fn run(args: ListenArgs) -> Result<(), CliError> {
    let (client, mut events) = builder(args.url.as_deref(), &args.connect)?
        .backoff_initial(args.backoff_initial)
        .backoff_max(args.backoff_max)
        .escalate_after(args.escalate_after)
        .connect()?;
    let out = Output::new(args.json);
    let mut states = client.state_changes();
    out.state(&client.state());
    let mut stdin = args
        .stdin
        .then(|| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    let ack_timeout = args
        .ack_timeout
        .or(args.retries.map(|_| Duration::from_secs(5)));
    let mut signal = std::pin::pin!(crate::signal::terminate());
    loop {
        tokio::select! {
            () = &mut signal => {
                client.disconnect().await;
                return Ok(());
            }
            state = states.recv() => match state {
                Ok(state) => {
                    out.state(&state);
                    if state.status.is_terminal() {
                        return Err(CliError::from_state(&state));
                    }
                }
                Err(RecvError::Lagged(_)) => out.state(&client.state()),
                Err(RecvError::Closed) => return Err(CliError::from_state(&client.state())),
            },
            incoming = events.next() => match incoming {
                Some(Incoming::Event(event)) => {
                    // A state is published before the events that follow it are handed
                    // over: printing the states already published first keeps the order
                    // (no event before `connected`), whichever branch woke first.
                    if let Some(end) = print_published_states(&mut states, &client, &out) {
                        return Err(end);
                    }
                    out.event(&event);
                }
                Some(_) => {}
                None => return Err(CliError::from_state(&client.state())),
            },
            line = next_line(&mut stdin) => match line {
                Some(line) => send_line(&client, &line, ack_timeout, args.retries.unwrap_or(0)).await,
                None => stdin = None,
            },
        }
    }
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

async fn next_line(
    stdin: &mut Option<tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>>,
) -> Option<String> {
    match stdin {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn send_line(client: &Client, line: &str, ack_timeout: Option<Duration>, retries: u32) {
    if line.trim().is_empty() {
        return;
    }
    let (name, payload) = match parse_emit_line(line) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "stdin line ignored");
            return;
        }
    };
    match ack_timeout {
        None => {
            if let Err(e) = client.emit(name, payload).await {
                tracing::warn!(error = %e, "emit failed");
            }
        }
        Some(timeout) => match client
            .emit_acked(name.clone(), payload, timeout, retries)
            .await
        {
            Ok(ack) => {
                tokio::spawn(async move {
                    if let Err(e) = ack.await {
                        tracing::warn!(event = %name, error = %e, "emit not acknowledged");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "emit failed"),
        },
    }
}
