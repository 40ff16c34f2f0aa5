//! Turning command-line options into a relink client builder.

use crate::cli::{ConnectArgs, TransportArg};
use crate::exit::CliError;
use relink::{ClientBuilder, Transport};

/// A builder with URL, namespace, token (as [`crate::token::load`] read it) and timeouts
/// from the options; the stored session fills in a missing URL or token.
pub(crate) fn builder(
    url: Option<&str>,
    token: Option<String>,
    args: &ConnectArgs,
) -> Result<ClientBuilder, CliError> {
    let token = token.map(relink::Token::new);
    let stored = if url.is_none() || token.is_none() {
        crate::session::load()?
    } else {
        None
    };
    let url = match (url, &stored) {
        (Some(url), _) => url.to_owned(),
        (None, Some(session)) => session.url.clone(),
        (None, None) => {
            return Err(CliError::Usage(
                "no URL given and none stored: pass a URL or run `relink login URL`".into(),
            ));
        }
    };
    let token = token.or_else(|| stored.map(|s| s.token));
    let mut builder = relink::Client::builder(url).connect_timeout(args.connect_timeout);
    if let Some(ns) = &args.namespace {
        builder = builder.namespace(ns);
    }
    if let Some(path) = &args.path {
        builder = builder.path(path);
    }
    builder = builder.transports(match args.transport {
        TransportArg::Auto => vec![Transport::WebSocket, Transport::Polling],
        TransportArg::Websocket => vec![Transport::WebSocket],
        TransportArg::Polling => vec![Transport::Polling],
    });
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(proxy);
    } else if args.no_proxy {
        builder = builder.no_proxy();
    }
    if let Some(token) = token {
        crate::exit::note_token_sent();
        builder = builder.token(token);
    }
    Ok(builder)
}

/// Whether a word is meant as a server URL rather than an event name (an unsupported scheme
/// is still a URL: the builder then names the problem). `host:port` without a scheme is a
/// URL too (relink takes it as `http://`) when the host is `localhost`, has a dot, or is a
/// bracketed IPv6 address: an event name such as `room:42` is not.
pub(crate) fn is_url(word: &str) -> bool {
    word.contains("://") || is_host_port(word)
}

fn is_host_port(word: &str) -> bool {
    let authority = word.split('/').next().unwrap_or_default();
    let Some((host, port)) = authority.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = host == "localhost"
        || (host.contains('.') && !host.starts_with('.'))
        || (host.starts_with('[') && host.ends_with(']'));
    port_ok && host_ok && !host.contains(char::is_whitespace)
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

    #[test]
    fn urls_are_told_from_event_names() {
        assert!(is_url("http://127.0.0.1:3000"));
        assert!(is_url("WSS://example.com/admin"));
        assert!(is_url("ftp://x"));
        assert!(!is_url("echo"));
        assert!(!is_url("http"));
        assert!(is_url("127.0.0.1:3000"));
        assert!(is_url("localhost:3000/admin"));
        assert!(is_url("[::1]:3000"));
        assert!(is_url("example.com:443"));
        assert!(!is_url("room:42"), "an event name");
        assert!(!is_url("a.b:notaport"));
        assert!(!is_url("127.0.0.1:0"));
    }
}
