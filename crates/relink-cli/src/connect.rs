//! Turning command-line options into a relink client builder.

use crate::cli::ConnectArgs;
use crate::exit::CliError;
use relink::ClientBuilder;

/// A builder with URL, namespace, token and timeouts from the options.
pub(crate) fn builder(args: &ConnectArgs) -> Result<ClientBuilder, CliError> {
    let mut builder = relink::Client::builder(&args.url).connect_timeout(args.connect_timeout);
    if let Some(ns) = &args.namespace {
        builder = builder.namespace(ns);
    }
    if let Some(token) = crate::token::load(args.token_file.as_deref())? {
        builder = builder.token(token);
    }
    Ok(builder)
}

/// Parses `["event", arg, ...]` from a stdin line.
pub(crate) fn parse_emit_line(line: &str) -> Result<(String, relink::Payload), String> {
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON array: {e}"))?;
    let (name, args) = items
        .split_first()
        .ok_or_else(|| "empty array: the first element must be the event name".to_string())?;
    let name: String = serde_json::from_str(name.get())
        .map_err(|_| "the first element must be the event name, a string".to_string())?;
    let mut payload = relink::Payload::new();
    for arg in args {
        payload.push(arg).map_err(|e| e.to_string())?;
    }
    Ok((name, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_are_event_arrays() {
        let (name, payload) = parse_emit_line(r#"["chat", "hi", {"n": 1}]"#).expect("valid");
        assert_eq!(name, "chat");
        assert_eq!(payload.as_json(), r#"["hi",{"n": 1}]"#);
        assert!(parse_emit_line("[]").is_err());
        assert!(parse_emit_line("[1]").is_err());
        assert!(parse_emit_line("{\"a\":1}").is_err());
        assert!(parse_emit_line("nope").is_err());
    }
}
