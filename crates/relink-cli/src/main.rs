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
mod stdin;
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

/// How long the runtime waits, once a command is done, for blocking work it cannot cancel
/// (a DNS lookup in flight); it must not hold the exit.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

fn run(cli: cli::Cli) -> Result<(), exit::CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| exit::CliError::Other(format!("cannot start the runtime: {e}")))?;
    // Registered before anything is printed or dialled, for every command that waits.
    let stop = || {
        let _runtime = runtime.enter();
        signal::terminate()
    };
    let result = match cli.command {
        cli::Command::Listen(args) => {
            let stop = stop();
            let secrets = token::known_secrets(args.connect.token_file.as_deref());
            let _telemetry = telemetry::init(args.connect.log_format, secrets);
            runtime.block_on(listen::run(args, stop))
        }
        cli::Command::Emit(args) => {
            let stop = stop();
            let secrets = token::known_secrets(args.connect.token_file.as_deref());
            let _telemetry = telemetry::init(args.connect.log_format, secrets);
            runtime.block_on(emit::run(args, stop))
        }
        // The demo installs its own subscriber: it counts relink's log records for its summary.
        cli::Command::Demo(args) => {
            let stop = stop();
            runtime.block_on(demo::run(args, stop))
        }
        cli::Command::Daemon(args) => {
            let stop = stop();
            let _telemetry = telemetry::init(args.log_format, token::known_secrets(None));
            runtime.block_on(daemon::run(args, stop))
        }
        cli::Command::Login(args) => {
            let stop = stop();
            runtime.block_on(login::login(&args.url, stop))
        }
        cli::Command::Logout => login::logout(),
    };
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}
