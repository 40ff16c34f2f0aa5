//! `relink`: the command line for the relink Socket.IO client.

#![forbid(unsafe_code)]

mod cli;
mod connect;
mod daemon;
mod demo;
mod emit;
mod exit;
mod listen;
mod login;
mod output;
mod rpc;
mod session;
mod signal;
mod telemetry;
mod token;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = run(cli);
    if let Err(e) = &result {
        eprintln!("relink: {e}");
    }
    exit::code(&result)
}

fn run(cli: cli::Cli) -> Result<(), exit::CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| exit::CliError::Other(format!("cannot start the runtime: {e}")))?;
    // Tokens that could reach a log line, scrubbed from Sentry events as a backstop.
    let secrets = token::known_secrets();
    match cli.command {
        cli::Command::Listen(args) => {
            let _telemetry = telemetry::init(args.connect.log_format, secrets);
            runtime.block_on(listen::run(args))
        }
        cli::Command::Emit(args) => {
            let _telemetry = telemetry::init(args.connect.log_format, secrets);
            runtime.block_on(emit::run(args))
        }
        // The demo installs its own subscriber: it counts relink's log records for its summary.
        cli::Command::Demo(args) => runtime.block_on(demo::run(args)),
        cli::Command::Daemon(args) => {
            let _telemetry = telemetry::init(args.log_format, secrets);
            runtime.block_on(daemon::run(args))
        }
        cli::Command::Login(args) => login::login(&args.url),
        cli::Command::Logout => login::logout(),
    }
}
