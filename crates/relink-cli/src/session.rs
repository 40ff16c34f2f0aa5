//! The stored session: URL and token saved by `relink login`, used when none is given.
//!
//! The file lives under the user's config directory with mode 0600; the token inside is
//! read back into a [`relink::Token`] and never printed.

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
    token: String,
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

/// Loads the stored session, if there is one.
pub(crate) fn load() -> Result<Option<Session>, CliError> {
    load_from(&path()?)
}

fn load_from(path: &Path) -> Result<Option<Session>, CliError> {
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
    let file: SessionFile = serde_json::from_str(&text).map_err(|_| {
        CliError::Other(format!(
            "{} is corrupt: run `relink login` again",
            path.display()
        ))
    })?;
    Ok(Some(Session {
        url: file.url,
        token: Token::new(file.token),
    }))
}

/// The stored token as text, only for scrubbing error reports.
pub(crate) fn stored_secret() -> Option<String> {
    let text = std::fs::read_to_string(path().ok()?).ok()?;
    serde_json::from_str::<SessionFile>(&text)
        .ok()
        .map(|f| f.token.trim().to_owned())
}

/// Stores URL and token, readable only by the user.
pub(crate) fn store(url: &str, token: &str) -> Result<PathBuf, CliError> {
    let path = path()?;
    store_at(&path, url, token)?;
    Ok(path)
}

/// Writes the file whole, through a new file renamed over the old one, so that nothing at
/// `path` is ever followed: a symbolic link there is refused (it could send the token to a
/// file of the link maker's choosing and change that file's mode), and one planted between
/// the check and the write is replaced by the rename, not written through.
fn store_at(path: &Path, url: &str, token: &str) -> Result<(), CliError> {
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
    let body = serde_json::to_string(&SessionFile {
        url: url.to_owned(),
        token: token.to_owned(),
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

/// Removes the stored session; returns whether there was one.
pub(crate) fn remove() -> Result<bool, CliError> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
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
        store_at(&path, "http://127.0.0.1:1", "tok").expect("stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let session = load_from(&path).expect("readable").expect("present");
        assert_eq!(session.url, "http://127.0.0.1:1");
        assert_eq!(session.token, Token::new("tok"));
        std::fs::write(&path, "not json").expect("write");
        assert!(load_from(&path).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(load_from(&path).expect("missing is fine").is_none());
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

        let e = store_at(&path, "http://127.0.0.1:1", "tok-link").expect_err("refused");
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
        store_at(&path, "http://127.0.0.1:2", "tok-2").expect("stored");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let session = load_from(&path).expect("readable").expect("present");
        assert_eq!(session.url, "http://127.0.0.1:2");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
