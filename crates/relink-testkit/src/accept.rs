//! The accept loop the testkit's servers share: one task per connection, all of them owned
//! by the loop, so aborting the loop's task stops every connection with it.

use std::future::Future;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Runs `serve` on every connection `listener` accepts, until accepting fails.
pub(crate) async fn each<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream));
                }
                Err(_) => return,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
