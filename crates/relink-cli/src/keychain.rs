//! The platform's secret store for the token `relink login` keeps: the macOS Keychain, the
//! Windows Credential Manager, the Secret Service (GNOME Keyring, KWallet) elsewhere, through
//! the `keyring` crate. Absent or unanswering (a server without a desktop session), the
//! session file keeps the token instead, and `login` says which.
//!
//! Every call runs on a thread of its own with a deadline: a Secret Service that D-Bus has
//! to start, or that waits on an unlock prompt nobody answers, must not hang the command.

use std::sync::mpsc;
use std::time::Duration;

/// The service name entries are stored under; the account names the session (its URL and
/// a number of the login's, see `session.rs`).
const SERVICE: &str = "relink";

/// How long a keychain call may take before the file is used instead.
const DEADLINE: Duration = Duration::from_secs(10);

/// `RELINK_KEYCHAIN=off` keeps the token in the session file even where a keychain exists.
pub(crate) const KEYCHAIN_ENV: &str = "RELINK_KEYCHAIN";

/// What the store is called, for messages.
pub(crate) fn name() -> &'static str {
    if cfg!(target_os = "macos") {
        "the macOS Keychain"
    } else if cfg!(windows) {
        "the Windows Credential Manager"
    } else {
        "the Secret Service keyring"
    }
}

/// Whether the user turned the keychain off.
pub(crate) fn turned_off() -> bool {
    std::env::var_os(KEYCHAIN_ENV).is_some_and(|v| v == "off")
}

/// Stores `token` under `account`.
pub(crate) fn store(account: &str, token: &str) -> Result<(), String> {
    let token = token.to_owned();
    call(account, move |entry| entry.set_password(&token)).map(|_| ())
}

/// The token stored under `account`, `None` when there is none.
pub(crate) fn load(account: &str) -> Result<Option<String>, String> {
    call(account, |entry| entry.get_password())
}

/// Removes the token stored under `account`; whether there was one.
pub(crate) fn remove(account: &str) -> Result<bool, String> {
    call(account, |entry| entry.delete_credential()).map(|deleted| deleted.is_some())
}

/// Runs `op` on the entry for `account` on a thread of its own, within [`DEADLINE`]: `None`
/// when the keychain has no such entry. Errors are described without the token (keyring's
/// errors never carry the secret).
fn call<T: Send + 'static>(
    account: &str,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Result<Option<T>, String> {
    let account = account.to_owned();
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("relink-keychain".into())
        .spawn(move || {
            let result = keyring::Entry::new(SERVICE, &account).and_then(|entry| op(&entry));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(format!("cannot start the keychain call: {e}"));
    }
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(value)) => Ok(Some(value)),
        Ok(Err(keyring::Error::NoEntry)) => Ok(None),
        Ok(Err(keyring::Error::NoDefaultStore | keyring::Error::NoStorageAccess(_))) => {
            Err(format!("{} is not available", name()))
        }
        Ok(Err(e)) => Err(format!("{}: {e}", name())),
        Err(_) => Err(format!(
            "{} did not answer within {} s",
            name(),
            DEADLINE.as_secs()
        )),
    }
}
