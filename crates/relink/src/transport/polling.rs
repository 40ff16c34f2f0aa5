//! The HTTP long-polling transport, and its upgrade to WebSocket.
//!
//! One GET is in flight while the link lives; the server answers it when it has packets.
//! What the core writes goes out in POSTs, one at a time, each batching what waits, bounded
//! by the server's `maxPayload`. The link looks like a WebSocket to the rest of relink: a
//! stream of text and binary frames in, frames out ([`super::Wire`]).
//!
//! Everything is driven from the calls the driver makes anyway (`poll_next` on every turn
//! of its loop, `poll_flush` after writes), so the requests need no task of their own.
//!
//! Upgrade, as socket.io-client does it: when the OPEN offers `websocket`, a WebSocket to
//! the same session sends `2probe` and waits for `3probe`; then polling pauses (the GET in
//! flight returns, the POST in flight finishes, nothing new starts), `5` and what waited
//! are written to the WebSocket, and from then on only the WebSocket is used. Frames that
//! came by polling are handed over before any that come by WebSocket, and frames written
//! during the switch follow the `5` in order: nothing is lost or reordered. A probe that
//! fails leaves the session on polling.

use super::http::{Client, exchange};
use super::websocket::{self, Ws, map_error};
use crate::error::LinkError;
use crate::net::Net;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use relink_proto::engine::EnginePacket;
use relink_proto::polling::{self as payload, Frame};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Message, http};

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, LinkError>> + Send>>;
type Headers = Arc<[(http::HeaderName, http::HeaderValue)]>;

/// Where the link stands with its upgrade.
enum Upgrade {
    /// Polling only: no WebSocket offered or allowed, or the probe failed.
    Off,
    /// The probe is under way; polling goes on meanwhile.
    Probing(Pending<Ws>),
    /// The probe answered: the requests in flight finish, no new one starts.
    Pausing(Box<Ws>),
    /// `5` and what waited are being written to the WebSocket.
    Switching(Box<Ws>, VecDeque<Message>),
    /// The WebSocket carries everything from now on.
    Done(Box<Ws>),
}

/// What opening a polling session needs.
pub(crate) struct Open<'a> {
    pub(crate) net: &'a Arc<Net>,
    pub(crate) http: &'a Client,
    /// `http(s)://.../?EIO=4&transport=polling[&user query]`.
    pub(crate) url: url::Url,
    /// The WebSocket URL to upgrade to, when WebSocket is allowed.
    pub(crate) upgrade_to: Option<url::Url>,
    pub(crate) headers: Headers,
    pub(crate) max_message_size: usize,
    /// How long the probe may take.
    pub(crate) probe_timeout: Duration,
}

/// One polling session.
pub(crate) struct Polling {
    http: Client,
    /// The session's URL (with `sid`).
    url: url::Url,
    headers: Headers,
    limit: usize,
    max_payload: usize,
    /// Frames received, not handed over yet.
    inbound: VecDeque<Message>,
    get: Option<Pending<Bytes>>,
    post: Option<Pending<Bytes>>,
    /// Frames written, not in a POST yet.
    unsent: VecDeque<Message>,
    /// Their size in a payload.
    unsent_bytes: usize,
    /// `1` (close) is queued: no new GET.
    closing: bool,
    upgrade: Upgrade,
    /// A POST or the switch failed: the next read reports it.
    failed: Option<LinkError>,
    /// The failure was reported: the stream has ended.
    ended: bool,
    /// The upgrade is done and the reader has not been told: the next read yields an
    /// empty pong (ignored as a frame), so the driver looks at the transport at once.
    announce: bool,
}

/// The handshake: a GET whose answer is the OPEN packet. The OPEN is handed over as the
/// first frame, as a WebSocket would hand it.
pub(crate) async fn open(open: Open<'_>) -> Result<Polling, LinkError> {
    let limit = open.max_message_size;
    let body = exchange(open.http, &open.url, &open.headers, None, limit)
        .await
        .map_err(|e| match e {
            LinkError::Http { status: 404, .. } => LinkError::NotFound {
                path: open.url.path().to_owned(),
            },
            other => other,
        })?;
    let frames = payload::decode(&body).map_err(|e| LinkError::Protocol(e.to_string()))?;
    let data = match frames.first() {
        Some(Frame::Text(text)) => match EnginePacket::decode(text) {
            Ok(EnginePacket::Open(data)) => data,
            Ok(_) => {
                return Err(LinkError::Protocol(
                    "the polling handshake did not start with OPEN".into(),
                ));
            }
            Err(e) => return Err(LinkError::Protocol(e.to_string())),
        },
        _ => {
            return Err(LinkError::Protocol(
                "the polling handshake did not start with OPEN".into(),
            ));
        }
    };
    let mut url = open.url.clone();
    url.query_pairs_mut().append_pair("sid", &data.sid);
    let upgrade = match open.upgrade_to {
        Some(mut ws_url) if data.upgrades.iter().any(|t| t == "websocket") => {
            ws_url.query_pairs_mut().append_pair("sid", &data.sid);
            Upgrade::Probing(Box::pin(probe(
                Arc::clone(open.net),
                ws_url,
                Arc::clone(&open.headers),
                limit,
                open.probe_timeout,
            )))
        }
        _ => Upgrade::Off,
    };
    Ok(Polling {
        http: open.http.clone(),
        url,
        headers: open.headers,
        limit,
        max_payload: usize::try_from(data.max_payload).unwrap_or(usize::MAX),
        inbound: frames.into_iter().map(into_message).collect(),
        get: None,
        post: None,
        unsent: VecDeque::new(),
        unsent_bytes: 0,
        closing: false,
        upgrade,
        failed: None,
        ended: false,
        announce: false,
    })
}

/// A WebSocket to the same session that answers `2probe` with `3probe`.
async fn probe(
    net: Arc<Net>,
    url: url::Url,
    headers: Headers,
    limit: usize,
    timeout: Duration,
) -> Result<Ws, LinkError> {
    let work = async {
        let mut ws = websocket::dial(&net, &url, limit, &headers).await?;
        ws.send(Message::text("2probe")).await.map_err(map_error)?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "3probe" => return Ok(ws),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(_)) => {
                    return Err(LinkError::Protocol(
                        "the upgrade probe was not answered with 3probe".into(),
                    ));
                }
                Some(Err(e)) => return Err(map_error(e)),
                None => return Err(LinkError::TransportClose),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(LinkError::ConnectTimeout(timeout)))
}

/// A frame's size in a payload (separator included).
fn payload_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => payload::text_len(text.as_str()),
        Message::Binary(bytes) => payload::binary_len(bytes),
        _ => 0,
    }
}

fn into_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::text(text),
        Frame::Binary(bytes) => Message::binary(bytes),
    }
}

impl Polling {
    /// Whether the WebSocket carries the session now.
    pub(crate) fn upgraded(&self) -> bool {
        matches!(self.upgrade, Upgrade::Done(_))
    }

    /// The WebSocket, once it carries everything and every frame polling received has
    /// been handed over.
    pub(crate) fn take_upgraded(&mut self) -> Option<Ws> {
        if !self.inbound.is_empty() || !self.upgraded() || self.announce {
            return None;
        }
        match std::mem::replace(&mut self.upgrade, Upgrade::Off) {
            Upgrade::Done(ws) => Some(*ws),
            other => {
                self.upgrade = other;
                None
            }
        }
    }

    /// Whether polling requests may start (not paused for the upgrade, not closing).
    fn polling(&self) -> bool {
        matches!(self.upgrade, Upgrade::Off | Upgrade::Probing(_))
    }

    fn fail(&mut self, error: LinkError) {
        self.failed.get_or_insert(error);
    }

    /// Moves the POST, the probe and the switch along; starts a POST when frames wait.
    fn drive(&mut self, cx: &mut Context<'_>) {
        loop {
            if let Some(post) = &mut self.post
                && let Poll::Ready(result) = post.as_mut().poll(cx)
            {
                self.post = None;
                if let Err(error) = result {
                    self.fail(error);
                }
            }
            let upgrade_moved = self.drive_upgrade(cx);
            if self.failed.is_some() {
                return;
            }
            let mut started = false;
            if self.polling() && self.post.is_none() && !self.unsent.is_empty() {
                self.post = Some(self.start_post());
                started = true;
            }
            if !upgrade_moved && !started {
                return;
            }
        }
    }

    /// One step of the upgrade; whether it moved.
    fn drive_upgrade(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.upgrade {
            Upgrade::Off | Upgrade::Done(_) => false,
            Upgrade::Probing(probe) => match probe.as_mut().poll(cx) {
                Poll::Pending => false,
                Poll::Ready(Ok(ws)) => {
                    self.upgrade = Upgrade::Pausing(Box::new(ws));
                    true
                }
                Poll::Ready(Err(error)) => {
                    tracing::debug!(%error, "the WebSocket upgrade failed: staying on long-polling");
                    self.upgrade = Upgrade::Off;
                    true
                }
            },
            Upgrade::Pausing(_) => {
                if self.get.is_some() || self.post.is_some() {
                    return false;
                }
                let Upgrade::Pausing(ws) = std::mem::replace(&mut self.upgrade, Upgrade::Off)
                else {
                    return false;
                };
                let mut queue = VecDeque::with_capacity(self.unsent.len() + 1);
                queue.push_back(Message::text("5"));
                queue.extend(self.unsent.drain(..));
                self.unsent_bytes = 0;
                self.upgrade = Upgrade::Switching(ws, queue);
                true
            }
            Upgrade::Switching(ws, queue) => {
                while !queue.is_empty() {
                    match ws.poll_ready_unpin(cx) {
                        Poll::Pending => return false,
                        Poll::Ready(Err(e)) => {
                            self.fail(map_error(e));
                            return false;
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    if let Some(message) = queue.pop_front()
                        && let Err(e) = ws.start_send_unpin(message)
                    {
                        self.fail(map_error(e));
                        return false;
                    }
                }
                match ws.poll_flush_unpin(cx) {
                    Poll::Pending => false,
                    Poll::Ready(Err(e)) => {
                        self.fail(map_error(e));
                        false
                    }
                    Poll::Ready(Ok(())) => {
                        let Upgrade::Switching(ws, _) =
                            std::mem::replace(&mut self.upgrade, Upgrade::Off)
                        else {
                            return false;
                        };
                        self.upgrade = Upgrade::Done(ws);
                        self.announce = true;
                        tracing::debug!("upgraded from long-polling to WebSocket");
                        true
                    }
                }
            }
        }
    }

    /// A POST of what waits, up to the server's `maxPayload` (at least one frame).
    fn start_post(&mut self) -> Pending<Bytes> {
        let mut body = Vec::new();
        while let Some(front) = self.unsent.front() {
            let len = payload_len(front);
            if !body.is_empty() && body.len() + len > self.max_payload {
                break;
            }
            self.unsent_bytes = self.unsent_bytes.saturating_sub(len);
            match self.unsent.pop_front() {
                Some(Message::Text(text)) => payload::push_text(&mut body, text.as_str()),
                Some(Message::Binary(bytes)) => payload::push_binary(&mut body, &bytes),
                _ => {}
            }
        }
        let (http, url, headers) = (
            self.http.clone(),
            self.url.clone(),
            Arc::clone(&self.headers),
        );
        Box::pin(
            async move { exchange(&http, &url, &headers, Some(Bytes::from(body)), 1024).await },
        )
    }

    fn start_get(&self) -> Pending<Bytes> {
        let (http, url, headers) = (
            self.http.clone(),
            self.url.clone(),
            Arc::clone(&self.headers),
        );
        let limit = self.limit;
        Box::pin(async move { exchange(&http, &url, &headers, None, limit).await })
    }

    /// The next frame: from the last poll response, then from the WebSocket once upgraded.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, LinkError>>> {
        loop {
            if let Some(message) = self.inbound.pop_front() {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            self.drive(cx);
            if let Some(error) = self.failed.take() {
                self.ended = true;
                return Poll::Ready(Some(Err(error)));
            }
            if std::mem::take(&mut self.announce) {
                return Poll::Ready(Some(Ok(Message::Pong(Bytes::new()))));
            }
            if let Upgrade::Done(ws) = &mut self.upgrade {
                return ws
                    .poll_next_unpin(cx)
                    .map(|next| next.map(|r| r.map_err(map_error)));
            }
            if self.get.is_none() && self.polling() && !self.closing {
                self.get = Some(self.start_get());
            }
            let Some(get) = &mut self.get else {
                return Poll::Pending;
            };
            let body = match get.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    self.get = None;
                    match result {
                        Ok(body) => body,
                        Err(error) => {
                            self.ended = true;
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                }
            };
            match payload::decode(&body) {
                Ok(frames) => self.inbound.extend(frames.into_iter().map(into_message)),
                Err(e) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(LinkError::Protocol(e.to_string()))));
                }
            }
        }
    }

    /// Ready while what waits for a POST is less than one POST's worth (the server's
    /// `maxPayload`); beyond that, not until the POST in flight is answered, so emits wait
    /// in the bounded outbox as they do behind a full WebSocket.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if let Some(error) = &self.failed {
            return Poll::Ready(Err(error.clone()));
        }
        if self.ended {
            return Poll::Ready(Err(LinkError::TransportClose));
        }
        if let Upgrade::Done(ws) = &mut self.upgrade {
            return ws.poll_ready_unpin(cx).map_err(map_error);
        }
        if self.unsent_bytes < self.max_payload {
            return Poll::Ready(Ok(()));
        }
        // The POST in flight (polled here with this caller's waker) makes room.
        self.drive(cx);
        if let Some(error) = &self.failed {
            return Poll::Ready(Err(error.clone()));
        }
        // Only a POST in flight is sure to wake this caller. Without one, polling is paused
        // for the upgrade (what waits goes to the WebSocket) or a POST has just started.
        if self.unsent_bytes < self.max_payload || self.post.is_none() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    pub(crate) fn start_send(&mut self, message: Message) -> Result<(), LinkError> {
        match &mut self.upgrade {
            Upgrade::Done(ws) => ws.start_send_unpin(message).map_err(map_error),
            Upgrade::Switching(_, queue) => {
                queue.push_back(message);
                Ok(())
            }
            _ => {
                self.unsent_bytes += payload_len(&message);
                self.unsent.push_back(message);
                Ok(())
            }
        }
    }

    /// Starts the POST of what was written (its answer is awaited by later polls).
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        self.drive(cx);
        match &mut self.upgrade {
            Upgrade::Done(ws) => ws.poll_flush_unpin(cx).map_err(map_error),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Sends `1` (close) after what waits, and waits until it is posted. An upgrade not
    /// yet switching is given up: leaving does not wait for a pause.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LinkError>> {
        if !self.closing {
            match std::mem::replace(&mut self.upgrade, Upgrade::Off) {
                // Frames written since the pause began are in `unsent`: they go by POST.
                Upgrade::Probing(_) | Upgrade::Pausing(_) => {}
                other => self.upgrade = other,
            }
        }
        self.drive(cx);
        if let Upgrade::Done(ws) = &mut self.upgrade {
            return ws.poll_close_unpin(cx).map_err(map_error);
        }
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Err(error));
        }
        // `1` goes in a POST of its own, once all before it is posted: engine.io handles a
        // payload's close at once but a Socket.IO packet on the next tick, so a DISCONNECT
        // in the same POST would be overtaken and the server would see "transport close".
        if !self.closing && self.polling() && self.post.is_none() && self.unsent.is_empty() {
            self.closing = true;
            self.start_send(Message::text("1"))?;
            self.drive(cx);
        }
        if self.closing && self.post.is_none() && self.unsent.is_empty() && self.polling() {
            return Poll::Ready(Ok(()));
        }
        // Switching: its WebSocket writes registered this waker; polling: the POST did.
        Poll::Pending
    }
}
