//! Command-line syntax. Names and flags are an interface: scripts call them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// relink: a Socket.IO v4 client that stays connected through outages and stays quiet
/// about them.
#[derive(Debug, Parser)]
#[command(name = "relink", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 clean end, 1 failure, 2 bad usage or configuration, \
3 credentials rejected by the server.\nThe token is read from --token-file or RELINK_TOKEN, \
never from the command line."
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
    /// Server URL: http(s):// or ws(s)://. A path other than / names the namespace.
    pub(crate) url: String,
    /// Namespace to join [default: / or the URL's path]
    #[arg(long, short = 'n', value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// Read the token from this file (first line, surrounding whitespace trimmed).
    /// Without it, RELINK_TOKEN is used if set.
    #[arg(long, value_name = "PATH")]
    pub(crate) token_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub(crate) log_format: LogFormat,
    /// Give up a connection attempt after this long (TCP, TLS, upgrade, handshakes).
    #[arg(long, value_parser = parse_duration, default_value = "20s", value_name = "DUR")]
    pub(crate) connect_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Print NDJSON on stdout: {"type":"state",...} and {"type":"event",...} lines.
    #[arg(long)]
    pub(crate) json: bool,
    /// Emit each stdin line, a JSON array ["event", arg, ...], in order.
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
    /// With --stdin: resend each emit up to N times until acked (at-least-once).
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<u32>,
    /// With --stdin: wait this long for each ack (default 5s when --retries is given).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub(crate) ack_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct EmitArgs {
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Event name.
    pub(crate) event: String,
    /// Arguments, each a JSON value (a bare word that is not JSON is sent as a string).
    #[arg(value_name = "ARGS_JSON")]
    pub(crate) args: Vec<String>,
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
