//! `relink login URL` and `relink logout`.

use crate::exit::CliError;
use std::io::{BufRead, IsTerminal};

/// Reads the token from stdin (without echo on a terminal) and stores it with the URL.
pub(crate) fn login(url: &str) -> Result<(), CliError> {
    relink::Client::builder(url).validate()?;
    let token = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("token: ")
            .map_err(|e| CliError::Other(format!("cannot read the token: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Other(format!("cannot read the token from stdin: {e}")))?;
        line
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::Usage("token must not be empty".into()));
    }
    let path = crate::session::store(url, token)?;
    eprintln!("relink: session stored in {}", path.display());
    Ok(())
}

/// Removes the stored session.
pub(crate) fn logout() -> Result<(), CliError> {
    if crate::session::remove()? {
        eprintln!("relink: session removed");
    } else {
        eprintln!("relink: no session stored");
    }
    Ok(())
}
