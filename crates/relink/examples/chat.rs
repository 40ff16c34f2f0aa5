//! A chat client: lines typed on stdin go to everyone in the room; what the others say is
//! printed. Messages typed while the server is away are sent when it is back.
//!
//! Against the Node server of the interop tests (`npm ci --prefix interop/node` once):
//!
//! ```text
//! node interop/node/server.mjs --standalone --port 3000
//! cargo run -p relink --example chat -- ada      # in one terminal
//! cargo run -p relink --example chat -- grace    # in another
//! ```
//!
//! `RELINK_URL` (default `http://127.0.0.1:3000`) and `RELINK_TOKEN` (default `secret`, the
//! test server's) point it elsewhere. Ctrl-C or end of input leaves the room.

use relink::{Client, Incoming};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nick = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "anonymous".to_owned());
    let url = std::env::var("RELINK_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let token = std::env::var("RELINK_TOKEN").unwrap_or_else(|_| "secret".into());

    let (client, mut events) = Client::builder(url).token(token).connect()?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(text) if !text.trim().is_empty() => {
                    client.emit("chat", (&nick, text)).await?;
                }
                Some(_) => {}
                // End of input: leave (what was typed is written before the goodbye).
                None => break,
            },
            incoming = events.next() => match incoming {
                Some(Incoming::Event(event)) if event.name() == "chat" => {
                    match event.args().deserialize::<(String, String)>() {
                        Ok((from, text)) if from != nick => println!("<{from}> {text}"),
                        Ok(_) => {}
                        Err(e) => eprintln!("(unreadable chat message: {e})"),
                    }
                }
                Some(Incoming::Connected { .. }) => eprintln!("(in the room as {nick})"),
                Some(Incoming::Disconnected { reason }) => {
                    eprintln!("(link down: {reason}; what you type is sent once it is back)");
                }
                Some(_) => {}
                // The client ended by itself: credentials refused, or the server said bye.
                None => {
                    let state = client.state();
                    eprintln!("(ended: {})", state.last_error.as_deref().unwrap_or("by the server"));
                    return Ok(());
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.disconnect().await;
    Ok(())
}
