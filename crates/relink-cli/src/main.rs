//! `relink`: the command line for the relink Socket.IO client.

#![forbid(unsafe_code)]

mod cli;
mod connect;
mod emit;
mod exit;
mod listen;
mod output;
mod signal;
mod telemetry;
mod token;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("relink: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            cli::Command::Listen(args) => {
                telemetry::init(args.connect.log_format);
                listen::run(args).await
            }
            cli::Command::Emit(args) => {
                telemetry::init(args.connect.log_format);
                emit::run(args).await
            }
        }
    });
    if let Err(e) = &result {
        eprintln!("relink: {e}");
    }
    exit::code(&result)
}
