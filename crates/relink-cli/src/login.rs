//! `relink login URL` and `relink logout`.

use crate::exit::CliError;
use crate::session::{Kept, Removed};
use crate::token::{MAX_TOKEN_FILE, Unfit, read_bounded};
use std::future::Future;
use std::io::IsTerminal;

/// Reads the token from stdin (without echo on a terminal) and stores it with the URL.
///
/// A signal while it waits for the token stores nothing, puts the terminal back as it was
/// (the prompt turns echo off, and the default action would leave it off) and exits 1.
pub(crate) async fn login(url: &str, stop: impl Future<Output = ()>) -> Result<(), CliError> {
    relink::Client::builder(url).validate()?;
    let terminal = Terminal::save();
    let read = tokio::task::spawn_blocking(read_token);
    let token = tokio::select! {
        read = read => read.map_err(|e| CliError::Other(format!("cannot read the token: {e}")))??,
        () = stop => {
            terminal.restore();
            return Err(CliError::Other("login interrupted: nothing stored".into()));
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::Usage("token must not be empty".into()));
    }
    let (path, kept) = crate::session::store(url, token)?;
    let file = path.display();
    match kept {
        Kept::Keychain => eprintln!(
            "relink: token stored in {}; the URL in {file}",
            crate::keychain::name()
        ),
        Kept::File(None) => eprintln!(
            "relink: token stored in {file} (readable by you only; {}=off)",
            crate::keychain::KEYCHAIN_ENV
        ),
        Kept::File(Some(why)) => {
            eprintln!("relink: {why}: token stored in {file} instead (readable by you only)");
        }
    }
    Ok(())
}

/// The token: typed without echo on a terminal, else the first line of stdin (at most the
/// size of a token file, so `< /dev/zero` cannot eat memory).
fn read_token() -> Result<String, CliError> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("token: ")
            .map_err(|e| CliError::Other(format!("cannot read the token: {e}")));
    }
    read_bounded(std::io::stdin().lock(), true).map_err(|unfit| match unfit {
        Unfit::Io(e) => CliError::Other(format!("cannot read the token from stdin: {e}")),
        Unfit::TooLarge => CliError::Usage(format!(
            "the token on stdin is longer than {} KiB",
            MAX_TOKEN_FILE / 1024
        )),
        Unfit::NotUtf8 => CliError::Usage("the token is not valid UTF-8".into()),
    })
}

/// The terminal's settings before the prompt changed them, when stdin is a terminal.
struct Terminal {
    #[cfg(unix)]
    saved: Option<rustix::termios::Termios>,
}

impl Terminal {
    fn save() -> Self {
        Terminal {
            #[cfg(unix)]
            saved: std::io::stdin()
                .is_terminal()
                .then(|| rustix::termios::tcgetattr(std::io::stdin()).ok())
                .flatten(),
        }
    }

    /// Puts the settings back and ends the prompt's line.
    fn restore(self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                &saved,
            );
            eprintln!();
        }
    }
}

/// Removes the stored session, and its token from the keychain if it kept it.
pub(crate) fn logout() -> Result<(), CliError> {
    match crate::session::remove()? {
        Removed::Nothing => eprintln!("relink: no session stored"),
        Removed::Session { keychain: None } => eprintln!("relink: session removed"),
        Removed::Session {
            keychain: Some(true),
        } => eprintln!(
            "relink: session removed, its token deleted from {}",
            crate::keychain::name()
        ),
        Removed::Session {
            keychain: Some(false),
        } => eprintln!(
            "relink: session removed (its token was no longer in {})",
            crate::keychain::name()
        ),
    }
    Ok(())
}
