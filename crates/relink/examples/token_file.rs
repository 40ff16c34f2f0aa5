//! A token read from a file before every connection attempt, so a token rotated on disk (by
//! a login helper, a sidecar, a secrets agent) is picked up at the next reconnect without
//! restarting the application. When the server rejects a token, relink asks the provider
//! once more and retries once: a file fixed in the meantime gets the client back; a second
//! rejection ends it (`Status::Failed`) instead of retrying forever.
//!
//! ```text
//! node interop/node/server.mjs --standalone --port 3000
//! echo secret > /tmp/relink-token
//! cargo run -p relink --example token_file -- /tmp/relink-token
//! ```
//!
//! Then stop and restart the server, or write a wrong token into the file and restart it:
//! the state lines show the reconnect, or the refusal.

use relink::{Client, Status, Token};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: token_file PATH (a file holding the token)")?;
    let url = std::env::var("RELINK_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());

    let (client, _) = Client::builder(url)
        .token_provider(move || {
            let path = path.clone();
            async move {
                let text = tokio::fs::read_to_string(&path).await?;
                // An empty file is refused by relink before any socket opens.
                Ok::<_, std::io::Error>(Token::from(text.trim().to_owned()))
            }
        })
        .connect()?;

    let mut states = client.watch_state();
    loop {
        let state = states.borrow_and_update().clone();
        // `last_error` describes a failure without secrets: the token never shows.
        let next = state
            .next_attempt_in
            .map(|delay| format!(", next attempt in {:.1} s", delay.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "{:?}: attempt {}, {}{next}",
            state.status,
            state.attempt,
            state.last_error.as_deref().unwrap_or("no error"),
        );
        if state.status == Status::Failed || state.status == Status::Disconnected {
            break;
        }
        tokio::select! {
            changed = states.changed() => if changed.is_err() { break },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    Ok(())
}
