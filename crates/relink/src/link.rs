//! The connected WebSocket, shared by the supervisor and the tasks that emit.
//!
//! The supervisor reads it, answers pings and writes everything that waits in the outbox. A
//! plain emit made while nothing waits is written by the emitting task itself, straight into
//! tungstenite's write buffer: handing every emit to the supervisor's task costs a
//! cross-thread hand-over per message, several times the cost of writing it. Writers never
//! wait here: whoever finds the socket not ready to take a frame leaves the frame to the
//! supervisor, and only the supervisor waits for the socket.
//!
//! The lock is held for one poll at a time, never across an `.await`.

use crate::transport::Ws;
use futures_util::{SinkExt, StreamExt};
use relink_proto::session::EncodedEvent;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio_tungstenite::tungstenite::{Error, Message};

/// A shared handle to one connection's WebSocket.
#[derive(Clone)]
pub(crate) struct Link {
    ws: Arc<Mutex<Ws>>,
}

impl Link {
    pub(crate) fn new(ws: Ws) -> Self {
        Link {
            ws: Arc::new(Mutex::new(ws)),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Ws> {
        // A panic inside one poll of tungstenite leaves nothing worse than a broken socket,
        // which the next read reports.
        self.ws.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls for the next message.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        self.lock().poll_next_unpin(cx)
    }

    /// The next message.
    pub(crate) async fn next(&self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next message if one is ready now.
    pub(crate) fn next_now(&self) -> Option<Option<Result<Message, Error>>> {
        match self.poll_next(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(item) => Some(item),
            Poll::Pending => None,
        }
    }

    /// Hands `message` to tungstenite, waiting while its write buffer is full.
    pub(crate) async fn feed(&self, message: Message) -> Result<(), Error> {
        let mut message = Some(message);
        std::future::poll_fn(|cx| {
            let mut ws = self.lock();
            std::task::ready!(ws.poll_ready_unpin(cx))?;
            match message.take() {
                Some(message) => Poll::Ready(ws.start_send_unpin(message)),
                None => Poll::Ready(Ok(())),
            }
        })
        .await
    }

    /// Writes everything buffered to the socket.
    pub(crate) async fn flush(&self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.lock().poll_flush_unpin(cx)).await
    }

    /// Starts and drives the WebSocket close handshake.
    pub(crate) async fn close(&self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.lock().poll_close_unpin(cx)).await
    }

    /// Hands `event` to the locked socket now if it can take it without waiting; gives it back
    /// otherwise. `waker` is woken when a socket that was not ready becomes writable (it
    /// should wake the supervisor, which then writes what was given back).
    ///
    /// Nothing is flushed: the caller asks the supervisor to.
    pub(crate) fn try_send(
        ws: &mut MutexGuard<'_, Ws>,
        event: EncodedEvent,
        waker: &Waker,
    ) -> Result<(), TrySend> {
        match ws.poll_ready_unpin(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(())) => {}
            // Failing or full, nothing was written: the event stays whole, for the outbox
            // (a failed connection is the supervisor's to notice; the emit goes out on the
            // next one).
            Poll::Ready(Err(_)) | Poll::Pending => return Err(TrySend::NotReady(event)),
        }
        // Once ready, tungstenite accepts whole messages into its buffer (it only tries the
        // socket when the buffer is large, and keeps the message if the socket is full).
        let (text, attachments) = event.into_parts();
        ws.start_send_unpin(Message::text(text))
            .map_err(|_| TrySend::Failed)?;
        for bytes in attachments {
            ws.start_send_unpin(Message::binary(bytes))
                .map_err(|_| TrySend::Failed)?;
        }
        Ok(())
    }
}

/// Why [`Link::try_send`] did not take an event.
pub(crate) enum TrySend {
    /// The socket cannot take it now: the event, for the outbox.
    NotReady(EncodedEvent),
    /// The connection failed while writing; the event is gone with it (the supervisor sees
    /// the failure on its next read or write).
    Failed,
}
