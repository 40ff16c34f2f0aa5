//! `relink emit`: connect, emit once, optionally print the ack, exit.

use crate::cli::EmitArgs;
use crate::connect::builder;
use crate::exit::CliError;
use relink::{AckError, Payload};

pub(crate) async fn run(
    args: EmitArgs,
    token: Option<String>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let (url, event, rest) = match args.words.split_first() {
        Some((first, rest)) if crate::connect::is_url(first) => match rest.split_first() {
            Some((event, rest)) => (Some(first.as_str()), event.clone(), rest),
            None => {
                return Err(CliError::Usage(
                    "missing the event name after the URL".into(),
                ));
            }
        },
        Some((event, rest)) => (None, event.clone(), rest),
        None => return Err(CliError::Usage("missing the event name".into())),
    };
    let payload = arguments(rest, args.raw)?;
    let (client, events) = builder(url, token, &args.connect)?
        .connect_timeout(args.timeout.min(args.connect.connect_timeout))
        .connect()?;
    // Nothing here reads the server's events: without a reader the connection discards
    // them, where an unread stream would fill up and, under the default backpressure, stop
    // the connection reading the ack.
    drop(events);
    let deadline = tokio::time::Instant::now() + args.timeout;
    let work = tokio::time::timeout_at(deadline, async {
        client
            .wait_connected()
            .await
            .map_err(|s| CliError::from_state(&s))?;
        if args.ack {
            let ack = client
                .emit_with_ack(event.clone(), payload, args.timeout)
                .await
                .map_err(|e| match e {
                    AckError::Timeout(_) => {
                        CliError::Other("no acknowledgement before the timeout".into())
                    }
                    other => CliError::Other(other.to_string()),
                })?;
            crate::output::print_ack(&ack);
        } else {
            client
                .emit(event.clone(), payload)
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
        }
        Ok(())
    });
    let result = tokio::select! {
        done = work => done.unwrap_or_else(|_| {
            let state = client.state();
            match state.last_error {
                Some(e) => Err(CliError::Other(format!("timed out; last error: {e}"))),
                None => Err(CliError::Other("timed out".into())),
            }
        }),
        // Asked to stop: a clean end, but the event may not have been sent or acked.
        () = stop => {
            tracing::warn!(event = %event, "stopped by a signal before the emit completed");
            Ok(())
        }
    };
    // Sends what was queued, then DISCONNECT and a WebSocket close.
    client.disconnect().await;
    result
}

/// Each argument is JSON; a bare word that is not JSON is sent as a string, but one that
/// starts like JSON must be valid JSON (a typo in `[1,2` is not silently a string). With
/// `raw`, every argument is a string.
fn arguments(args: &[String], raw: bool) -> Result<Payload, CliError> {
    let mut payload = Payload::new();
    for (i, arg) in args.iter().enumerate() {
        let pushed = if raw {
            payload.push(arg.as_str())
        } else {
            match serde_json::from_str::<&serde_json::value::RawValue>(arg) {
                Ok(json) => payload.push(json),
                Err(e) if arg.trim_start().starts_with(['[', '{', '"']) => {
                    return Err(CliError::Usage(format!(
                        "argument {} is not valid JSON ({e}): {arg:?}; fix it, or pass --raw \
                         to send every argument as a string",
                        i + 1
                    )));
                }
                Err(_) => payload.push(arg.as_str()),
            }
        };
        pushed.map_err(|e| CliError::Usage(format!("argument {arg:?}: {e}")))?;
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_json_or_strings() {
        let p = arguments(
            &[
                "1".into(),
                "{\"a\":true}".into(),
                "hello".into(),
                "\"q\"".into(),
            ],
            false,
        )
        .expect("valid");
        assert_eq!(p.as_json(), r#"[1,{"a":true},"hello","q"]"#);
        let broken = arguments(&["[1,2".into()], false).expect_err("not JSON");
        assert!(
            broken.to_string().contains("argument 1 is not valid JSON"),
            "{broken}"
        );
        let raw = arguments(&["[1,2".into(), "3".into()], true).expect("raw");
        assert_eq!(raw.as_json(), r#"["[1,2","3"]"#);
    }
}
