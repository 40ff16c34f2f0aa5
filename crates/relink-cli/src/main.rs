//! `relink`: the command line for the relink Socket.IO client.

#![forbid(unsafe_code)]

mod cli;
mod connect;
mod daemon;
mod demo;
mod emit;
mod exit;
mod keychain;
mod listen;
mod login;
mod metrics;
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
        cli::Command::Listen(args) => runtime.block_on(async {
            let mut stop = std::pin::pin!(stop());
            let Some((token, _telemetry)) = prepare(&args.connect, stop.as_mut()).await? else {
                return Ok(());
            };
            let _metrics = serve_metrics(args.metrics).await?;
            listen::run(args, token, stop).await
        }),
        cli::Command::Emit(args) => runtime.block_on(async {
            let mut stop = std::pin::pin!(stop());
            let Some((token, _telemetry)) = prepare(&args.connect, stop.as_mut()).await? else {
                return Ok(());
            };
            emit::run(args, token, stop).await
        }),
        // The demo installs its own subscriber: it counts relink's log records for its summary.
        cli::Command::Demo(args) => {
            let stop = stop();
            runtime.block_on(demo::run(args, stop))
        }
        cli::Command::Daemon(args) => {
            let stop = stop();
            let _telemetry = telemetry::init(args.log_format, token::known_secrets(None));
            runtime.block_on(async {
                let _metrics = serve_metrics(args.metrics).await?;
                daemon::run(args, stop).await
            })
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

/// `--metrics`, when given.
async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<metrics::Serving>, exit::CliError> {
    match addr {
        Some(addr) => metrics::serve(addr).await.map(Some),
        None => Ok(None),
    }
}

/// What a command that connects does first: reads the token (once: a token file may be a
/// pipe), then starts the logs with that token in the scrub list. `None` when a stop signal
/// came while the token was being read.
async fn prepare(
    args: &cli::ConnectArgs,
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<(Option<String>, telemetry::Telemetry)>, exit::CliError> {
    let token = match token::load_unless_stopped(args.token_file.clone(), stop).await? {
        token::Loaded::Token(token) => token,
        token::Loaded::Stopped => return Ok(None),
    };
    let telemetry = telemetry::init(args.log_format, token::known_secrets(token.as_deref()));
    Ok(Some((token, telemetry)))
}
