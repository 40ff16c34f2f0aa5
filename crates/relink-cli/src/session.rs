//! The stored session: URL and token saved by `relink login`, used when none is given.
//!
//! The file lives under the user's config directory with mode 0600. The token goes to the
//! platform's keychain when there is one (see `keychain.rs`; the file then says so and holds
//! only the URL), into the file otherwise; either way it is read back into a
//! [`relink::Token`] and never printed.

use crate::exit::CliError;
use relink::Token;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Overrides where the session file lives (tests, several profiles).
pub(crate) const SESSION_FILE_ENV: &str = "RELINK_SESSION_FILE";

/// A saved URL and token.
pub(crate) struct Session {
    pub(crate) url: String,
    pub(crate) token: Token,
}

#[derive(Serialize, Deserialize)]
struct SessionFile {
    url: String,
    /// The token, unless the keychain keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// The keychain's entry keeping the token, if it does: the URL and a number of this
    /// login's, so that session files for the same server (`RELINK_SESSION_FILE`) keep
    /// tokens of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keychain: Option<String>,
}

/// Where [`store`] put the token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Kept {
    /// In the platform's keychain.
    Keychain,
    /// In the session file: the keychain was turned off (`None`) or could not be used
    /// (why).
    File(Option<String>),
}

/// Where the session file is.
pub(crate) fn path() -> Result<PathBuf, CliError> {
    if let Some(path) = std::env::var_os(SESSION_FILE_ENV) {
        return Ok(PathBuf::from(path));
    }
    directories::ProjectDirs::from("", "", "relink")
        .map(|dirs| dirs.config_dir().join("session.json"))
        .ok_or_else(|| CliError::Other("no home directory to keep the session in".into()))
}

/// Loads the stored session, if there is one (asking the keychain for its token if it
/// keeps it).
pub(crate) fn load() -> Result<Option<Session>, CliError> {
    let Some(file) = read(&path()?)? else {
        return Ok(None);
    };
    let token = match (file.token, file.keychain) {
        (Some(token), _) => token,
        (None, Some(entry)) => match crate::keychain::load(&entry) {
            Ok(Some(token)) => {
                // Known now, so scrubbed from error reports like a token from a file.
                crate::telemetry::scrub_also(&token);
                token
            }
            Ok(None) => {
                return Err(CliError::Usage(format!(
                    "the stored session's token is no longer in {}: run `relink login` again",
                    crate::keychain::name()
                )));
            }
            Err(e) => {
                return Err(CliError::Other(format!(
                    "cannot read the stored token: {e}"
                )));
            }
        },
        (None, None) => {
            return Err(CliError::Other(format!(
                "{} holds no token: run `relink login` again",
                path()?.display()
            )));
        }
    };
    Ok(Some(Session {
        url: file.url,
        token: Token::new(token),
    }))
}

/// The session file, if there is one.
fn read(path: &Path) -> Result<Option<SessionFile>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::Other(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    serde_json::from_str(&text).map(Some).map_err(|_| {
        CliError::Other(format!(
            "{} is corrupt: run `relink login` again",
            path.display()
        ))
    })
}

/// The stored token as text, only for scrubbing error reports. A token in the keychain is
/// not read for this (that could prompt to unlock it); [`load`] adds it once read.
pub(crate) fn stored_secret() -> Option<String> {
    let file = read(&path().ok()?).ok()??;
    file.token.map(|token| token.trim().to_owned())
}

/// Stores URL and token, the token in the keychain when there is one (unless
/// `RELINK_KEYCHAIN=off`), else in the file, readable only by the user. Each login has an
/// entry of its own: the previous session's is removed once the new one is stored, and a
/// login that fails half-way leaves the previous session as it was.
pub(crate) fn store(url: &str, token: &str) -> Result<(PathBuf, Kept), CliError> {
    let path = path()?;
    let previous = read(&path).ok().flatten().and_then(|file| file.keychain);
    let entry = format!("{url} #{:08x}", rand::random::<u32>());
    let kept = if crate::keychain::turned_off() {
        Kept::File(None)
    } else {
        match crate::keychain::store(&entry, token) {
            Ok(()) => Kept::Keychain,
            Err(why) => Kept::File(Some(why)),
        }
    };
    let stored = match kept {
        Kept::Keychain => store_at(&path, url, Stored::Keychain(&entry)),
        Kept::File(_) => store_at(&path, url, Stored::File(token)),
    };
    if let Err(e) = stored {
        if kept == Kept::Keychain {
            let _ = crate::keychain::remove(&entry);
        }
        return Err(e);
    }
    if let Some(previous) = previous.filter(|previous| *previous != entry) {
        let _ = crate::keychain::remove(&previous);
    }
    Ok((path, kept))
}

/// What the session file holds besides the URL.
enum Stored<'a> {
    /// The token.
    File(&'a str),
    /// The keychain entry that keeps the token.
    Keychain(&'a str),
}

/// Writes the file whole, through a new file renamed over the old one, so that nothing at
/// `path` is ever followed: a symbolic link there is refused (it could send the token to a
/// file of the link maker's choosing and change that file's mode), and one planted between
/// the check and the write is replaced by the rename, not written through.
fn store_at(path: &Path, url: &str, stored: Stored<'_>) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Other(format!("cannot write {}: {e}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(CliError::Other(format!(
                "refusing to write {}: it is a symbolic link, and the token must not go \
                 wherever a link points; remove it and run `relink login` again",
                path.display()
            )));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(CliError::Other(format!(
                "refusing to write {}: it is not a regular file",
                path.display()
            )));
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let (token, keychain) = match stored {
        Stored::File(token) => (Some(token.to_owned()), None),
        Stored::Keychain(entry) => (None, Some(entry.to_owned())),
    };
    let body = serde_json::to_string(&SessionFile {
        url: url.to_owned(),
        token,
        keychain,
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    let file_name = path
        .file_name()
        .map_or_else(|| "session.json".into(), |n| n.to_string_lossy());
    let temp = dir.join(format!(
        ".{file_name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    // `create_new` never follows a link and never opens a file someone else made.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut file| {
        std::io::Write::write_all(&mut file, body.as_bytes())?;
        file.sync_all()
    });
    let stored = written.and_then(|()| std::fs::rename(&temp, path));
    if stored.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    stored.map_err(io)
}

/// What [`remove`] found.
pub(crate) enum Removed {
    /// No session was stored.
    Nothing,
    /// The session file, and what became of a token the keychain kept: `None` when the file
    /// held it, `Some(true)` deleted, `Some(false)` already gone.
    Session { keychain: Option<bool> },
}

/// Removes the stored session, its token in the keychain first: a keychain that cannot
/// delete it now leaves the file in place, so that `logout` can be run again.
pub(crate) fn remove() -> Result<Removed, CliError> {
    let path = path()?;
    // A corrupt file is removed all the same (it names no entry to delete).
    let entry = read(&path).ok().flatten().and_then(|file| file.keychain);
    let keychain = match &entry {
        Some(entry) => Some(crate::keychain::remove(entry).map_err(|e| {
            CliError::Other(format!(
                "cannot delete the stored token: {e}; the session is kept: run `relink \
                 logout` again"
            ))
        })?),
        None => None,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Removed::Session { keychain }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removed::Nothing),
        Err(e) => Err(CliError::Other(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_with_mode_0600_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("relink-session-{}", std::process::id()));
        let path = dir.join("nested").join("session.json");
        store_at(&path, "http://127.0.0.1:1", Stored::File("tok")).expect("stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let file = read(&path).expect("readable").expect("present");
        assert_eq!(file.url, "http://127.0.0.1:1");
        assert_eq!((file.token.as_deref(), file.keychain), (Some("tok"), None));
        std::fs::write(&path, "not json").expect("write");
        assert!(read(&path).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(read(&path).expect("missing is fine").is_none());
    }

    #[test]
    fn a_token_kept_by_the_keychain_is_not_in_the_file() {
        let dir = fresh_dir("keychain");
        let path = dir.join("session.json");
        store_at(
            &path,
            "http://127.0.0.1:3",
            Stored::Keychain("http://127.0.0.1:3 #01"),
        )
        .expect("stored");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            r#"{"url":"http://127.0.0.1:3","keychain":"http://127.0.0.1:3 #01"}"#
        );
        let file = read(&path).expect("readable").expect("present");
        assert_eq!(file.token, None);
        assert_eq!(file.keychain.as_deref(), Some("http://127.0.0.1:3 #01"));
        // A file from before the keychain (no `keychain` field) still reads.
        std::fs::write(&path, r#"{"url":"u","token":"t"}"#).expect("write");
        let file = read(&path).expect("readable").expect("present");
        assert_eq!((file.token.as_deref(), file.keychain), (Some("t"), None));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A new directory of its own in the temp dir.
    fn fresh_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "relink-session-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_session_file_is_refused_and_its_target_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir("link");
        let target = dir.join("victim.txt");
        std::fs::write(&target, "precious").expect("write");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("mode");
        let path = dir.join("session.json");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");

        let e =
            store_at(&path, "http://127.0.0.1:1", Stored::File("tok-link")).expect_err("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "precious");
        let mode = std::fs::metadata(&target)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "the target's mode is unchanged");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temp file left: {leftovers:?}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn storing_again_replaces_the_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fresh_dir("again");
        let path = dir.join("session.json");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("mode");
        store_at(&path, "http://127.0.0.1:2", Stored::File("tok-2")).expect("stored");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let file = read(&path).expect("readable").expect("present");
        assert_eq!(file.url, "http://127.0.0.1:2");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
