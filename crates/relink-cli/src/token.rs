//! Where the CLI gets the token: a file or RELINK_TOKEN, never an argument.

use crate::exit::CliError;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// The environment variable holding the token.
pub(crate) const TOKEN_ENV: &str = "RELINK_TOKEN";

/// The most a token file may hold. Tokens are short (a large JWT is a few KiB); the bound
/// keeps `--token-file /dev/zero` or a mistyped path to a huge file from eating memory.
pub(crate) const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// The configured token's text: the first line of the token file, else RELINK_TOKEN,
/// without the whitespace around it; `Ok(None)` when none is configured. A blank one is a
/// usage error. Read once: a token file may be a pipe (`--token-file <(pass show x)`).
pub(crate) fn load(token_file: Option<&Path>) -> Result<Option<String>, CliError> {
    let raw = match token_file {
        Some(path) => read_token_file(path)?,
        None => match std::env::var(TOKEN_ENV) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(CliError::Usage(format!("{TOKEN_ENV} is not valid UTF-8")));
            }
        },
    };
    let token = raw.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(CliError::Usage("token must not be empty".into()));
    }
    Ok(Some(token.to_owned()))
}

/// What [`load_unless_stopped`] ended with.
pub(crate) enum Loaded {
    /// The token's text, if one is configured.
    Token(Option<String>),
    /// A stop signal came first.
    Stopped,
}

/// [`load`] on a blocking thread, raced against `stop`: a token file may be a FIFO whose
/// writer never comes, and a signal must still end the process.
pub(crate) async fn load_unless_stopped(
    token_file: Option<PathBuf>,
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Loaded, CliError> {
    let read = tokio::task::spawn_blocking(move || load(token_file.as_deref()));
    tokio::select! {
        read = read => read
            .map_err(|e| CliError::Other(format!("cannot read the token: {e}")))?
            .map(Loaded::Token),
        () = stop => Ok(Loaded::Stopped),
    }
}

/// Why [`read_bounded`] refused what it read.
pub(crate) enum Unfit {
    /// Reading failed.
    Io(std::io::Error),
    /// More than [`MAX_TOKEN_FILE`] bytes.
    TooLarge,
    /// Not UTF-8.
    NotUtf8,
}

/// Reads at most [`MAX_TOKEN_FILE`] bytes of a token from `input` (to its end, or to the
/// first newline with `one_line`), so that `/dev/zero` cannot eat memory. The one bounded
/// read for token files and `login`'s piped token; the callers word the refusals, which
/// never quote what was read.
pub(crate) fn read_bounded(input: impl BufRead, one_line: bool) -> Result<String, Unfit> {
    let mut bytes = Vec::new();
    let mut input = input.take(MAX_TOKEN_FILE + 1);
    let read = if one_line {
        input.read_until(b'\n', &mut bytes)
    } else {
        input.read_to_end(&mut bytes)
    };
    read.map_err(Unfit::Io)?;
    if bytes.len() as u64 > MAX_TOKEN_FILE {
        return Err(Unfit::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| Unfit::NotUtf8)
}

/// The file's text, refused when it is larger than [`MAX_TOKEN_FILE`] or not UTF-8.
fn read_token_file(path: &Path) -> Result<String, CliError> {
    let fail = |why: String| CliError::Usage(format!("token file {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    read_bounded(std::io::BufReader::new(file), false).map_err(|unfit| {
        fail(match unfit {
            Unfit::Io(e) => format!("cannot read it: {e}"),
            Unfit::TooLarge => format!(
                "larger than {} KiB; it should hold only the token",
                MAX_TOKEN_FILE / 1024
            ),
            Unfit::NotUtf8 => "not valid UTF-8".into(),
        })
    })
}

/// Every token this process knows about at start (the one loaded from the token file or
/// the environment, the stored session's), for scrubbing error reports.
pub(crate) fn known_secrets(loaded: Option<&str>) -> Vec<String> {
    let mut secrets: Vec<String> = loaded.map(str::to_owned).into_iter().collect();
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        secrets.push(token.trim().to_owned());
    }
    if let Some(token) = crate::session::stored_secret() {
        secrets.push(token);
    }
    secrets.retain(|s| !s.is_empty());
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(tag: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "relink-token-{tag}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&path, contents).expect("write");
        path
    }

    #[test]
    fn token_files_are_bounded_and_utf8() {
        let big = temp_file("big", &vec![b'a'; MAX_TOKEN_FILE as usize + 1]);
        let e = load(Some(&big)).expect_err("too large").to_string();
        assert!(e.contains("larger than 64 KiB"), "{e}");
        let binary = temp_file("binary", b"\xff\xfe\n");
        let e = load(Some(&binary)).expect_err("not UTF-8").to_string();
        assert!(e.contains("not valid UTF-8"), "{e}");
        let fits = temp_file("fits", b"  tok-1  \nsecond line\n");
        assert_eq!(load(Some(&fits)).expect("ok").as_deref(), Some("tok-1"));
        for path in [big, binary, fits] {
            let _ = std::fs::remove_file(path);
        }
    }

    #[test]
    fn the_loaded_token_is_among_the_secrets_to_scrub() {
        let secrets = known_secrets(Some("tok-from-file-9"));
        assert!(
            secrets.iter().any(|s| s == "tok-from-file-9"),
            "{secrets:?}"
        );
    }
}
