//! The one place that maps outcomes to exit codes.

use relink::{BuildError, ConnectionState, EndReason, Status};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process sends a token: a rejection without one says how to give one.
static TOKEN_SENT: AtomicBool = AtomicBool::new(false);

/// A token is configured for the client (see [`CliError::from_state`]).
pub(crate) fn note_token_sent() {
    TOKEN_SENT.store(true, Ordering::Relaxed);
}
use thiserror::Error;

/// Why a command failed; each maps to exactly one exit code.
#[derive(Debug, Error)]
pub(crate) enum CliError {
    /// Bad usage or configuration: nothing was dialled.
    #[error("{0}")]
    Usage(String),
    /// The server rejected the credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<BuildError> for CliError {
    fn from(e: BuildError) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl CliError {
    /// The error for a client that ended in `state` when it should have been running.
    pub(crate) fn from_state(state: &ConnectionState) -> Self {
        let detail = state
            .last_error
            .clone()
            .unwrap_or_else(|| "connection ended".into());
        match (state.status, state.end) {
            (_, Some(EndReason::Unauthorized)) if !TOKEN_SENT.load(Ordering::Relaxed) => {
                CliError::Unauthorized(format!(
                    "credentials rejected: {detail}; no token was sent: set RELINK_TOKEN, \
                     pass --token-file FILE, or run `relink login URL`"
                ))
            }
            (_, Some(EndReason::Unauthorized)) => {
                CliError::Unauthorized(format!("credentials rejected: {detail}"))
            }
            (_, Some(EndReason::EmptyToken)) => CliError::Usage("token must not be empty".into()),
            (_, Some(EndReason::Configuration)) => CliError::Usage(detail),
            (Status::Disconnected, Some(EndReason::ServerDisconnect)) => {
                CliError::Other("disconnected by the server".into())
            }
            _ => CliError::Other(detail),
        }
    }
}

/// Exit codes: 0 clean end, 1 anything else, 2 usage or configuration, 3 credentials rejected.
pub(crate) fn code(result: &Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Other(_)) => ExitCode::from(1),
        Err(CliError::Usage(_)) => ExitCode::from(2),
        Err(CliError::Unauthorized(_)) => ExitCode::from(3),
    }
}
