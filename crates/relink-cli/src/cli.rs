//! Command-line syntax. Names and flags are an interface: scripts call them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// relink: a Socket.IO v4 client that stays connected through outages and stays quiet
/// about them.
#[derive(Debug, Parser)]
#[command(name = "relink", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 clean end (a stop signal, or stdout closed by its reader), \
1 failure, 2 bad usage or configuration, 3 credentials rejected by the server.\nThe token is \
read from --token-file or RELINK_TOKEN, never from the command line.\nEnvironment: \
RELINK_TOKEN (the token), RELINK_SESSION_FILE (where `relink login` keeps the URL and token; \
default: session.json in the user's config directory), RUST_LOG (log filter, e.g. \
relink=debug)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect and stay connected, printing state changes and events.
    Listen(ListenArgs),
    /// Connect, emit one event, optionally wait for its ack, and exit.
    Emit(EmitArgs),
    /// Watch relink ride out an outage: embedded server, gateway, 503s, recovery. No setup.
    Demo(DemoArgs),
    /// Serve JSON-RPC 2.0 (HTTP and WebSocket) so other processes can drive a socket.
    Daemon(DaemonArgs),
    /// Store a server URL and token (read from stdin) for later commands
    /// [env: RELINK_SESSION_FILE names the file].
    Login(LoginArgs),
    /// Remove the stored URL and token [env: RELINK_SESSION_FILE names the file].
    Logout,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long the gateway answers HTTP 503.
    #[arg(long, value_parser = parse_duration, default_value = "12s", value_name = "DUR")]
    pub(crate) outage: Duration,
    /// Log format on stderr (logs are off unless RUST_LOG is set; the demo draws its own
    /// status line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Args)]
pub(crate) struct DaemonArgs {
    /// Address to listen on; loopback only (127.0.0.0/8 or [::1]).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub(crate) listen: std::net::SocketAddr,
    /// Close a connection that has not sent a request's headers within this long (on a new
    /// connection and between requests on a kept-alive one).
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DUR")]
    pub(crate) header_timeout: Duration,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Serve the clients' metrics for Prometheus at http://ADDR/metrics; a port alone means
    /// loopback (9184 is 127.0.0.1:9184).
    #[arg(long, value_parser = crate::metrics::parse_addr, value_name = "ADDR")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// When `socket.subscribe_events` subscribers fall behind the server: `backpressure`
    /// loses nothing and slows the server down; `drop` keeps up by dropping events and sends
    /// subscribers `{"lagged": N}` saying how many.
    #[arg(long, value_enum, default_value_t = OverflowArg::Backpressure, value_name = "POLICY")]
    pub(crate) overflow: OverflowArg,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Server URL to remember.
    pub(crate) url: String,
}

/// How logs on stderr look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with a `level` field.
    Json,
}

/// Options every command that connects shares.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Namespace to join [default: / or the URL's path]
    #[arg(long, short = 'n', value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// Read the token from this file (first line, surrounding whitespace trimmed; at most
    /// 64 KiB; a pipe works). Without it: RELINK_TOKEN, then the token stored by
    /// `relink login` [env: RELINK_TOKEN]
    #[arg(long, value_name = "PATH")]
    pub(crate) token_file: Option<PathBuf>,
    /// The Engine.IO path on the server [default: /socket.io/]
    #[arg(long, value_name = "PATH")]
    pub(crate) path: Option<String>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Give up a connection attempt after this long (TCP, TLS, upgrade, handshakes).
    #[arg(long, value_parser = parse_duration, default_value = "20s", value_name = "DUR")]
    pub(crate) connect_timeout: Duration,
    /// How to reach the server.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto, value_name = "TRANSPORT")]
    pub(crate) transport: TransportArg,
    /// Connect through this proxy: http://host:port (http://user:password@host:port for
    /// Basic credentials) or socks5://, socks5h://. Without it: HTTPS_PROXY, HTTP_PROXY,
    /// ALL_PROXY and NO_PROXY, as curl reads them. A password here shows in the process
    /// list: prefer the environment for one.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Connect directly, whatever the proxy variables say.
    #[arg(long, conflicts_with = "proxy")]
    pub(crate) no_proxy: bool,
}

/// `--transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportArg {
    /// WebSocket first; HTTP long-polling when WebSocket is refused on the way (a proxy or
    /// gateway that strips it), upgraded to WebSocket when the server offers it.
    Auto,
    /// WebSocket only.
    Websocket,
    /// HTTP long-polling only (never upgraded).
    Polling,
}

/// `--overflow`: what happens to server events while the reader (stdout, a subscriber) is
/// behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OverflowArg {
    /// Lose nothing: stop reading from the server until the reader catches up (TCP then
    /// slows the server down).
    Backpressure,
    /// Keep reading, drop what the reader has no room for, and say how many were dropped.
    Drop,
}

impl From<OverflowArg> for relink::Overflow {
    fn from(arg: OverflowArg) -> Self {
        match arg {
            OverflowArg::Backpressure => relink::Overflow::Backpressure,
            OverflowArg::Drop => relink::Overflow::Drop,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Server URL: http(s)://, ws(s):// or host:port (taken as http://). A path other than /
    /// names the namespace. [default: the URL stored by `relink login`]
    pub(crate) url: Option<String>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Print NDJSON on stdout: {"type":"state",...} and {"type":"event",...} lines.
    #[arg(long)]
    pub(crate) json: bool,
    /// Emit each stdin line, a JSON array ["event", arg, ...], in order, once connected. A
    /// line that is not UTF-8, not such an array, or longer than the server's maxPayload
    /// (16 MiB at most) is skipped with a warning.
    #[arg(long)]
    pub(crate) stdin: bool,
    /// First reconnect backoff ceiling.
    #[arg(long, value_parser = parse_duration, default_value = "1s", value_name = "DUR")]
    pub(crate) backoff_initial: Duration,
    /// Largest reconnect backoff ceiling.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DUR")]
    pub(crate) backoff_max: Duration,
    /// Failed attempts in one outage before the single ERROR log record.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub(crate) escalate_after: u32,
    /// Give up (exit 1) after N failed attempts in one outage, the first included [default: never]
    #[arg(long, value_name = "N", conflicts_with = "no_reconnect")]
    pub(crate) reconnection_attempts: Option<u32>,
    /// Never reconnect: the first failed attempt or a lost connection ends the command.
    #[arg(long)]
    pub(crate) no_reconnect: bool,
    /// With --stdin: resend each emit up to N times until acked (at-least-once).
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<u32>,
    /// With --stdin: wait this long for each ack (default 5s when --retries is given).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub(crate) ack_timeout: Option<Duration>,
    /// Answer every server event that asks for an ack with these arguments: a JSON array
    /// (`'["ok"]'`), or one JSON value sent as the only argument.
    #[arg(long, value_name = "JSON")]
    pub(crate) ack_with: Option<String>,
    /// When stdout falls behind the server: `backpressure` loses nothing and slows the server
    /// down; `drop` keeps up by dropping events and prints how many were dropped.
    #[arg(long, value_enum, default_value_t = OverflowArg::Backpressure, value_name = "POLICY")]
    pub(crate) overflow: OverflowArg,
    /// Serve the client's metrics for Prometheus at http://ADDR/metrics (connection attempts,
    /// outages, reconnect delays, outbox depth, events and bytes); a port alone means
    /// loopback (9184 is 127.0.0.1:9184).
    #[arg(long, value_parser = crate::metrics::parse_addr, value_name = "ADDR")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
#[command(override_usage = "relink emit [OPTIONS] [URL] <EVENT> [ARGS_JSON]...")]
#[command(after_help = "Arguments:
  [URL]           Server URL: http(s)://, ws(s):// or host:port (taken as http://; the
                  host localhost, an IP address or a name with a dot, else write
                  http://); optional after `relink login`
  <EVENT>         The event name
  [ARGS_JSON]...  Its arguments, each a JSON value. A bare word is sent as a string; an
                  argument that starts like JSON ([, { or \") must be valid JSON, or pass
                  --raw to send every argument as a string")]
pub(crate) struct EmitArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// [URL] EVENT [ARGS_JSON]... (see Arguments below).
    #[arg(value_name = "WORDS", required = true, num_args = 1.., hide = true)]
    pub(crate) words: Vec<String>,
    /// Send every argument as a string, as typed.
    #[arg(long)]
    pub(crate) raw: bool,
    /// Wait for the server's ack and print its arguments as JSON.
    #[arg(long)]
    pub(crate) ack: bool,
    /// Give up after this long (connecting, sending and waiting for the ack).
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DUR")]
    pub(crate) timeout: Duration,
}

/// Parses `500ms`, `30s`, `2m`, `1h 5m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 500ms, 30s, 2m)"))
}
