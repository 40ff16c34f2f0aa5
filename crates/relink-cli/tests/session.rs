//! `relink login` / `logout` on the built binary: the stored session's file mode, and
//! `emit` using it when no URL or token is given.

#![allow(clippy::unwrap_used, missing_docs)]

use relink_testkit::node::{NodeOptions, NodeServer};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn session_path(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("relink-session-test-{}-{name}", std::process::id()))
        .join("session.json")
}

/// Runs the binary to completion with `stdin` fed in; isolated from the caller's token and
/// keychain (`RELINK_KEYCHAIN=off`: a test must not write into the keychain of whoever
/// runs it).
fn run(args: &[&str], session: &PathBuf, stdin: &str) -> Output {
    run_with(args, session, stdin, &[("RELINK_KEYCHAIN", Some("off"))])
}

/// [`run`] with `env` set (`None`: removed) instead of the keychain switch.
fn run_with(args: &[&str], session: &PathBuf, stdin: &str, env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relink"));
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let mut child = cmd
        .args(args)
        .env_remove("RELINK_TOKEN")
        .env_remove("RUST_LOG")
        .env("RELINK_SESSION_FILE", session)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn login_stores_a_private_session_that_emit_uses_and_logout_removes() {
    let server = NodeServer::start(NodeOptions {
        token: "tok-SESSION-91".into(),
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let session = session_path("roundtrip");
    let url = server.url();

    let out = run(&["login", &url], &session, "tok-SESSION-91\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "session file readable only by the user"
        );
    }
    let stored = std::fs::read_to_string(&session).unwrap();
    assert!(stored.contains(&url));

    // No URL, no token on the command line: both come from the session.
    let out = tokio::task::spawn_blocking({
        let session = session.clone();
        move || run(&["emit", "echo", "\"from-session\"", "--ack"], &session, "")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["from-session"]"#
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("tok-SESSION-91"), "{all}");

    let out = run(&["logout"], &session, "");
    assert!(out.status.success());
    assert!(!session.exists());
    let out = run(&["emit", "echo", "1"], &session, "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "no URL and no session is a usage error"
    );
    std::fs::remove_dir_all(session.parent().unwrap()).ok();
}

#[test]
fn login_refuses_an_empty_token_and_a_bad_url() {
    let session = session_path("refuse");
    let out = run(&["login", "http://127.0.0.1:9"], &session, "   \n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token must not be empty"));
    assert!(!session.exists());
    let out = run(&["login", "ftp://nowhere"], &session, "tok\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid URL"));
    assert!(!session.exists());
}

#[cfg(unix)]
#[test]
fn login_refuses_a_symlinked_session_file_and_leaves_its_target_alone() {
    use std::os::unix::fs::PermissionsExt;
    let session = session_path("symlink");
    let dir = session.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, &session).unwrap();

    let out = run(&["login", "http://127.0.0.1:9"], &session, "tok-LINK-3\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("symbolic link"), "says why: {stderr}");
    assert!(!stderr.contains("tok-LINK-3"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "the link's target keeps its mode");
    assert!(
        std::fs::symlink_metadata(&session)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn login_reads_at_most_a_token_file_from_stdin() {
    let session = session_path("huge-stdin");
    let zeros = "\0".repeat(100 * 1024);
    let out = run(&["login", "http://127.0.0.1:9"], &session, &zeros);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("longer than 64 KiB"), "{stderr}");
    assert!(!session.exists());
}

#[cfg(target_os = "linux")]
#[test]
fn a_signal_at_the_login_prompt_stores_nothing_and_exits_1() {
    let session = session_path("signal-piped");
    let mut child = Command::new(env!("CARGO_BIN_EXE_relink"))
        .args(["login", "http://127.0.0.1:9"])
        .env("RELINK_SESSION_FILE", &session)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Waiting for a token that never comes: stdin stays open.
    let _stdin = child.stdin.take().unwrap();
    signal_once_caught(&mut child, "TERM", 15);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!session.exists());
}

/// Sends `SIG<name>` (number `number`) once the child catches it, as `/proc` shows, or
/// after 10 s if it never does (the signal's default action then ends it, and the caller's
/// assertion on the exit says so).
#[cfg(target_os = "linux")]
fn signal_once_caught(child: &mut std::process::Child, name: &str, number: u32) {
    let status = format!("/proc/{}/status", child.id());
    for _ in 0..1000 {
        let caught = std::fs::read_to_string(&status)
            .ok()
            .and_then(|text| {
                let mask = text.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (number - 1)) != 0);
        if caught {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
}

/// Ctrl-C at the no-echo prompt used to leave the terminal without echo.
#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_at_the_login_prompt_gives_the_terminal_its_echo_back() {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use rustix::termios::{LocalModes, tcgetattr};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    assert!(
        tcgetattr(&terminal)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
    );

    let session = session_path("signal-tty");
    // `setsid --ctty`: the pseudo-terminal becomes the child's controlling terminal, the
    // one the prompt turns echo off on.
    let mut child = Command::new("setsid")
        .arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_relink"))
        .args(["login", "http://127.0.0.1:9"])
        .env("RELINK_SESSION_FILE", &session)
        .stdin(terminal.try_clone().unwrap())
        .stdout(Stdio::null())
        .stderr(terminal.try_clone().unwrap())
        .spawn()
        .unwrap();
    // The prompt is up once echo is off.
    let mut prompted = false;
    for _ in 0..300 {
        if !tcgetattr(&terminal)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
        {
            prompted = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(prompted, "the prompt never turned echo off");
    signal_once_caught(&mut child, "INT", 2);
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a clean stop, not the default action"
    );
    assert!(
        tcgetattr(&terminal)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO),
        "echo is back on"
    );
    assert!(!session.exists());
    drop(master);
}

/// The file's token, if it holds one.
fn token_in(session: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(session).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["token"].as_str().map(str::to_owned)
}

#[test]
fn login_with_the_keychain_off_keeps_the_token_in_the_file_and_says_so() {
    let session = session_path("keychain-off");
    let out = run(&["login", "http://127.0.0.1:9"], &session, "tok-OFF-1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("RELINK_KEYCHAIN=off"), "{stderr}");
    assert!(!stderr.contains("tok-OFF-1"), "{stderr}");
    assert_eq!(token_in(&session).as_deref(), Some("tok-OFF-1"));
    let out = run(&["logout"], &session, "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "relink: session removed"
    );
    std::fs::remove_dir_all(session.parent().unwrap()).ok();
}

/// Without a session bus there is no Secret Service: the file keeps the token, and login
/// says why.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn login_without_a_keychain_falls_back_to_the_file_and_says_why() {
    let session = session_path("no-keychain");
    let no_bus = [
        ("RELINK_KEYCHAIN", None),
        (
            "DBUS_SESSION_BUS_ADDRESS",
            Some("unix:path=/nonexistent/relink-test-bus"),
        ),
    ];
    let out = run_with(
        &["login", "http://127.0.0.1:9"],
        &session,
        "tok-NOKC-2\n",
        &no_bus,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Secret Service") && stderr.contains("instead"),
        "{stderr}"
    );
    assert!(!stderr.contains("tok-NOKC-2"), "{stderr}");
    assert_eq!(token_in(&session).as_deref(), Some("tok-NOKC-2"));
    let out = run_with(&["logout"], &session, "", &no_bus);
    assert!(out.status.success());
    assert!(!session.exists());
    std::fs::remove_dir_all(session.parent().unwrap()).ok();
}

/// The keychain path, against a real Secret Service. Skipped by default (CI machines have
/// no desktop session); run it where one is unlocked, or in a throwaway one:
///
/// ```text
/// dbus-run-session -- sh -c 'echo pw | gnome-keyring-daemon --unlock --components=secrets \
///   && cargo test -p relink-cli --test session -- --ignored'
/// ```
#[tokio::test]
#[ignore = "needs an unlocked Secret Service (see the doc comment)"]
async fn login_keeps_the_token_in_the_keychain_and_logout_deletes_it() {
    let server = NodeServer::start(NodeOptions {
        token: "tok-KEYCHAIN-7".into(),
        ..NodeOptions::default()
    })
    .await
    .unwrap();
    let session = session_path("keychain");
    let url = server.url();
    let keychain = [("RELINK_KEYCHAIN", None)];
    let out = run_with(&["login", &url], &session, "tok-KEYCHAIN-7\n", &keychain);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("token stored in the Secret Service keyring"),
        "{stderr}"
    );
    let file = std::fs::read_to_string(&session).unwrap();
    assert!(
        !file.contains("tok-KEYCHAIN-7"),
        "the file holds no token: {file}"
    );
    assert!(file.contains(&format!("\"keychain\":\"{url} #")), "{file}");

    let out = tokio::task::spawn_blocking({
        let session = session.clone();
        move || {
            run_with(
                &["emit", "echo", "\"from-keychain\"", "--ack"],
                &session,
                "",
                &[("RELINK_KEYCHAIN", None)],
            )
        }
    })
    .await
    .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains(r#"["from-keychain"]"#), "{all}");
    assert!(!all.contains("tok-KEYCHAIN-7"), "{all}");

    let out = run_with(&["logout"], &session, "", &keychain);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains("deleted from the Secret Service keyring"),
        "{stderr}"
    );
    assert!(!session.exists());
    // A session file naming an entry the keychain does not have fails with a clear message.
    std::fs::create_dir_all(session.parent().unwrap()).unwrap();
    std::fs::write(
        &session,
        format!(r#"{{"url":"{url}","keychain":"{url} #deadbeef"}}"#),
    )
    .unwrap();
    let out = run_with(&["emit", "echo", "1"], &session, "", &keychain);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no longer in the Secret Service keyring"),
        "{stderr}"
    );
    // Logout says the token was gone already, and removes the file.
    let out = run_with(&["logout"], &session, "", &keychain);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("was no longer in"), "{stderr}");
    assert!(!session.exists());
    std::fs::remove_dir_all(session.parent().unwrap()).ok();
}

/// Two session files for the same server keep tokens of their own, and logging out of one
/// leaves the other's. Needs a Secret Service, like the test above.
#[test]
#[ignore = "needs an unlocked Secret Service (see the test above)"]
fn two_sessions_for_one_server_keep_their_own_tokens() {
    let a = session_path("keychain-a");
    let b = session_path("keychain-b");
    let keychain = [("RELINK_KEYCHAIN", None)];
    let url = "http://127.0.0.1:9";
    assert!(
        run_with(&["login", url], &a, "tok-A\n", &keychain)
            .status
            .success()
    );
    assert!(
        run_with(&["login", url], &b, "tok-B\n", &keychain)
            .status
            .success()
    );
    let entry = |session: &PathBuf| -> String {
        let text = std::fs::read_to_string(session).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value["keychain"].as_str().unwrap().to_owned()
    };
    assert_ne!(entry(&a), entry(&b));
    let out = run_with(&["logout"], &a, "", &keychain);
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted from"));
    // b's token is still there: its logout deletes it (rather than finding it gone).
    let out = run_with(&["logout"], &b, "", &keychain);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains("deleted from"), "{stderr}");
    for session in [a, b] {
        std::fs::remove_dir_all(session.parent().unwrap()).ok();
    }
}
