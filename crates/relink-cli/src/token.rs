//! Where the CLI gets the token: a file or RELINK_TOKEN, never an argument.

use crate::exit::CliError;
use relink::Token;
use std::path::Path;

/// The environment variable holding the token.
pub(crate) const TOKEN_ENV: &str = "RELINK_TOKEN";

/// Reads the token; `Ok(None)` when none is configured. A blank one is a usage error.
pub(crate) fn load(token_file: Option<&Path>) -> Result<Option<Token>, CliError> {
    let raw = match token_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read token file {}: {e}", path.display()))
        })?,
        None => match std::env::var(TOKEN_ENV) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CliError::Usage(format!("{TOKEN_ENV} is not valid UTF-8")));
            }
        },
    };
    let token = Token::new(raw.lines().next().unwrap_or("").trim());
    if token.is_blank() {
        return Err(CliError::Usage("token must not be empty".into()));
    }
    Ok(Some(token))
}

/// Every token this process could know about at start (environment, stored session), for
/// scrubbing error reports. Read failures are ignored here: the command reports them.
pub(crate) fn known_secrets() -> Vec<String> {
    let mut secrets = Vec::new();
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        secrets.push(token.trim().to_owned());
    }
    if let Some(token) = crate::session::stored_secret() {
        secrets.push(token);
    }
    secrets
}
