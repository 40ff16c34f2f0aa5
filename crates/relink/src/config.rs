//! [`ClientBuilder`]: every setting checked once, before anything is dialled.

use crate::core::connection::Setup;
use crate::core::reconnect::Settings;
use crate::error::{BuildError, LinkError};
use crate::handlers::HandlerFn;
use crate::net::Net;
use crate::net::proxy::{Proxy, ProxyChoice};
use crate::policy::backoff::Backoff;
use crate::token::Token;
use crate::transport::Transport;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::http;
use url::Url;

/// A boxed future returning a fresh token, or a description of why there is none.
pub(crate) type TokenFuture = Pin<Box<dyn Future<Output = Result<Token, String>> + Send>>;

/// Called before every connection attempt for the token to send.
pub(crate) type TokenProvider = Arc<dyn Fn() -> TokenFuture + Send + Sync>;

/// Where to connect, and how to show it without secrets.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// `ws(s)://host:port/path?EIO=4&transport=websocket[&user query]`.
    pub(crate) ws_url: Url,
    /// `scheme://host:port/path`, no query, no userinfo: safe to log.
    pub(crate) display: String,
}

/// The validated configuration the supervisor runs on.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) namespace: String,
    pub(crate) token: Option<Token>,
    pub(crate) token_provider: Option<TokenProvider>,
    pub(crate) auth: serde_json::Map<String, serde_json::Value>,
    pub(crate) backoff: Backoff,
    pub(crate) stable_after: Duration,
    pub(crate) escalate_after: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_on_server_disconnect: bool,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) recovery: bool,
    pub(crate) outbox_packets: usize,
    pub(crate) outbox_bytes: usize,
    pub(crate) event_buffer: usize,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) overflow: crate::Overflow,
    pub(crate) max_message_size: usize,
    pub(crate) max_attachments: usize,
    /// The proxy rule and TLS trust every connection of this client goes through.
    pub(crate) net: Arc<Net>,
    /// The pooled HTTP client for long-polling (over `net`).
    pub(crate) http: crate::transport::http::Client,
    /// The transports allowed, in the order to try them.
    pub(crate) transports: Vec<Transport>,
    /// Extra handshake headers (values may be secrets: never logged).
    pub(crate) headers: Arc<[(http::HeaderName, http::HeaderValue)]>,
    /// Handlers registered on the builder.
    pub(crate) handlers: Vec<(Option<String>, HandlerFn)>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint.display)
            .field("namespace", &self.namespace)
            .field("token", &self.token)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// Builds a [`crate::Client`]. Defaults follow the Socket.IO reference client where they are
/// sound, and relink's policy where they are not (backoff, escalation).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (client, mut events) = relink::Client::builder("https://example.com")
///     .token("s3cret")
///     .namespace("/chat")
///     .connect()?;
/// client.emit("hello", relink::Payload::json("world")?).await?;
/// while let Some(incoming) = events.next().await {
///     println!("{incoming:?}");
/// }
/// # Ok(()) }
/// ```
#[must_use]
pub struct ClientBuilder {
    url: String,
    path: String,
    namespace: Option<String>,
    token: Option<Token>,
    token_provider: Option<TokenProvider>,
    auth: Option<serde_json::Value>,
    backoff: Backoff,
    stable_after: Duration,
    escalate_after: u32,
    connect_timeout: Duration,
    reconnect_on_server_disconnect: bool,
    max_attempts: Option<u32>,
    recovery: bool,
    outbox_packets: usize,
    outbox_bytes: usize,
    event_buffer: usize,
    max_buffered_bytes: usize,
    overflow: crate::Overflow,
    max_message_size: usize,
    max_attachments: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: ProxyChoice,
    transports: Vec<Transport>,
    /// Extra handshake headers, as given (checked at build time).
    headers: Vec<(String, String)>,
    /// Handlers by event name (`None`: the catch-all).
    handlers: Vec<(Option<String>, HandlerFn)>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("namespace", &self.namespace)
            .field("token", &self.token)
            // Names only: a header's value may be a credential.
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Starts a builder for `url`: `http(s)://` or `ws(s)://`. A path other than `/` names the
    /// namespace, as in the reference client (`https://host/admin` is namespace `/admin`).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            path: "/socket.io/".into(),
            namespace: None,
            token: None,
            token_provider: None,
            auth: None,
            backoff: Backoff::default(),
            stable_after: Duration::from_secs(5),
            escalate_after: 5,
            connect_timeout: Duration::from_secs(20),
            reconnect_on_server_disconnect: false,
            max_attempts: None,
            recovery: true,
            outbox_packets: 1024,
            outbox_bytes: 4 << 20,
            event_buffer: usize::MAX,
            max_buffered_bytes: 64 << 20,
            overflow: crate::Overflow::Backpressure,
            max_message_size: 64 << 20,
            max_attachments: relink_proto::session::DEFAULT_MAX_ATTACHMENTS,
            tls: None,
            proxy: ProxyChoice::default(),
            transports: vec![Transport::WebSocket, Transport::Polling],
            headers: Vec::new(),
            handlers: Vec::new(),
        }
    }

    /// The namespace to join (default `/`, or the URL's path).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The Engine.IO path on the server (default `/socket.io/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The token, sent as `{"token": ...}` in the CONNECT packet (never in the URL).
    pub fn token(mut self, token: impl Into<Token>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Called before every connection attempt for a fresh token. When the server rejects the
    /// credentials the client asks once more and retries once; a second rejection is final.
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, E>> + Send + 'static,
        E: fmt::Display,
    {
        self.token_provider = Some(Arc::new(move || {
            let fut = provider();
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// Extra fields for the CONNECT payload (a JSON object); `token` is added to it.
    pub fn auth(mut self, auth: serde_json::Value) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The first backoff ceiling (default 1 s).
    pub fn backoff_initial(mut self, initial: Duration) -> Self {
        self.backoff.initial = initial;
        self
    }

    /// The largest backoff ceiling (default 30 s).
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff.max = max;
        self
    }

    /// The longest `Retry-After` honoured (default 5 min).
    pub fn retry_after_max(mut self, max: Duration) -> Self {
        self.backoff.retry_after_max = max;
        self
    }

    /// How long a connection must hold before backoff resets (default 5 s).
    pub fn stable_after(mut self, period: Duration) -> Self {
        self.stable_after = period;
        self
    }

    /// Failed attempts in one outage before the single ERROR record (default 5).
    pub fn escalate_after(mut self, attempts: u32) -> Self {
        self.escalate_after = attempts;
        self
    }

    /// Limit for TCP, TLS, upgrade and both handshakes together (default 20 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Calls `handler` with every server event named `event` from the first one on (see
    /// [`crate::Client::on`]).
    pub fn on<F, Fut>(mut self, event: impl Into<String>, handler: F) -> Self
    where
        F: Fn(crate::Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers
            .push((Some(event.into()), crate::handlers::boxed(handler)));
        self
    }

    /// Calls `handler` with every server event no named handler takes, from the first one
    /// on (see [`crate::Client::on_any`]).
    pub fn on_any<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(crate::Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers.push((None, crate::handlers::boxed(handler)));
        self
    }

    /// An extra HTTP header on the WebSocket handshake (`extraHeaders` in the reference
    /// client), for a gateway that wants an API key or a tenant id. Its value is never
    /// logged nor shown in errors or `Debug`. The handshake's own headers (`Host`,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-*`) cannot be replaced.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Whether to reconnect at all (default true). Off, the first failed attempt ends the
    /// client `failed` (`attempts_exhausted`), and a lost connection, however long it held,
    /// ends it `disconnected` (`connection_lost`). The one retry with fresh credentials
    /// after a rejection still happens.
    pub fn reconnection(mut self, on: bool) -> Self {
        self.max_attempts = if on { None } else { Some(0) };
        self
    }

    /// Gives up after this many failed attempts in one outage, the first included (default:
    /// never): the client ends `failed` (`attempts_exhausted`), with the outage's ERROR. `0`
    /// is `reconnection(false)`.
    pub fn reconnection_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Reconnect even when the server disconnects the namespace on purpose (default off, as in
    /// Socket.IO: a server-side disconnect is final).
    pub fn reconnect_on_server_disconnect(mut self, yes: bool) -> Self {
        self.reconnect_on_server_disconnect = yes;
        self
    }

    /// Ask the server to restore the session after a drop (default on; needs the server's
    /// `connectionStateRecovery`).
    pub fn recovery(mut self, yes: bool) -> Self {
        self.recovery = yes;
        self
    }

    /// Bounds of the outbox that keeps emits while disconnected (default 1024 packets, 4 MiB).
    pub fn outbox_limits(mut self, packets: usize, bytes: usize) -> Self {
        self.outbox_packets = packets;
        self.outbox_bytes = bytes;
        self
    }

    /// At most how many inbound events (and notices) may wait for the application, on top
    /// of the byte budget ([`ClientBuilder::max_buffered_bytes`]); default: no count, the
    /// bytes alone bound it. What happens at the bound is the [`ClientBuilder::overflow`]
    /// policy's: by default the connection stops reading the socket until the application
    /// makes room, and nothing is dropped.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }

    /// How many bytes of inbound events (names, arguments, attachments, and a small fixed
    /// cost per event) may wait for the application, in [`crate::Events`] and in every
    /// handler's queue together (default 64 MiB; must be more than zero). An event is let
    /// in while the bound is not reached yet, so one event of any size always gets through
    /// and the bound is passed by one message at most. What happens at the bound is the
    /// [`ClientBuilder::overflow`] policy's.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }

    /// What happens when the application falls behind the server: by default
    /// ([`crate::Overflow::Backpressure`]) nothing is dropped and the connection stops
    /// reading until there is room; [`crate::Overflow::Drop`] keeps reading and drops what
    /// does not fit, telling the reader with [`crate::Incoming::Lagged`].
    ///
    /// ```
    /// use relink::{Client, Overflow};
    ///
    /// // Live cursor positions: the freshest matter, a few hundred kilobytes at most wait.
    /// let builder = Client::builder("http://127.0.0.1:3000")
    ///     .overflow(Overflow::Drop)
    ///     .max_buffered_bytes(256 << 10);
    /// # drop(builder);
    /// ```
    pub fn overflow(mut self, policy: crate::Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// The largest WebSocket message accepted from the server (default 64 MiB), and the
    /// largest packet: a binary packet's text and attachments together. A server that sends
    /// more ends the link (a protocol error, retried like any other).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The most binary attachments accepted in one packet (default 256).
    pub fn max_attachments(mut self, attachments: usize) -> Self {
        self.max_attachments = attachments;
        self
    }

    /// A custom rustls configuration (private CAs, client certificates), in place of the
    /// default: the operating system's trusted certificates (`SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` honoured), or the bundled Mozilla roots where the system has none.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// The transports to use, in the order to try them (default `[WebSocket, Polling]`).
    ///
    /// - `[WebSocket, Polling]`: WebSocket first; when it is refused as a transport (an
    ///   HTTP 400, which is what engine.io answers when a proxy stripped `Upgrade` or the
    ///   server does not allow WebSocket; an upgrade answered 200 or 404; a connection
    ///   closed before the upgrade was answered), long-polling at once, upgraded to
    ///   WebSocket when the server offers it. The transport that worked is tried first on
    ///   the next reconnect. A failure that is not about the transport (503, refused, a
    ///   timeout) never falls back.
    /// - `[Polling, WebSocket]`: long-polling first, upgraded when offered (socket.io-client's
    ///   default).
    /// - `[WebSocket]` or `[Polling]`: that transport only (polling never upgrades).
    ///
    /// [`ConnectionState::transport`](crate::ConnectionState::transport) says which one
    /// carries the connection.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use relink::{Client, Transport};
    /// // A network whose proxy breaks WebSocket: long-polling only.
    /// let (client, _) = Client::builder("https://example.com")
    ///     .token("s3cret")
    ///     .transports([Transport::Polling])
    ///     .connect()?;
    /// client.wait_connected().await.ok();
    /// assert_eq!(client.state().transport, Some(Transport::Polling));
    /// # Ok(()) }
    /// ```
    pub fn transports(mut self, transports: impl IntoIterator<Item = Transport>) -> Self {
        self.transports = transports.into_iter().collect();
        self
    }

    /// Connects through this proxy, whatever the environment says: `http://host:port`
    /// (a CONNECT tunnel; `http://user:password@host:port` for Basic credentials),
    /// `socks5://` or `socks5h://` (the proxy resolves names). The URL is never logged or
    /// shown: it may hold a password.
    ///
    /// Without this, `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (lower case
    /// too) are honoured, as curl reads them. A proxy that wants other credentials ends the
    /// client with [`LinkError::ProxyAuth`](crate::LinkError::ProxyAuth); a URL that cannot
    /// be used fails [`ClientBuilder::connect`] with [`BuildError::InvalidSetting`].
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let password = std::env::var("PROXY_PASSWORD")?;
    /// let (client, _) = relink::Client::builder("https://example.com")
    ///     .token("s3cret")
    ///     .proxy(format!("http://me:{password}@proxy.internal:3128"))
    ///     .connect()?;
    /// # drop(client);
    /// # Ok(()) }
    /// ```
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxyChoice::Url(url.into());
        self
    }

    /// Connects directly, whatever the environment's proxy variables say.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxyChoice::Off;
        self
    }

    /// Checks every setting without connecting: the same checks as
    /// [`ClientBuilder::connect`], for tools that store a configuration for later.
    pub fn validate(self) -> Result<(), BuildError> {
        self.build().map(drop)
    }

    /// Checks every setting.
    pub(crate) fn build(self) -> Result<Config, BuildError> {
        if self.token.as_ref().is_some_and(Token::is_blank) {
            return Err(BuildError::EmptyToken);
        }
        let (endpoint, url_namespace) = endpoint(&self.url, &self.path)?;
        let namespace = match (self.namespace, url_namespace) {
            (Some(ns), Some(from_url)) if ns != from_url => {
                return Err(BuildError::InvalidNamespace(format!(
                    "{ns} conflicts with the URL's path {from_url}"
                )));
            }
            (Some(ns), _) => ns,
            (None, Some(from_url)) => from_url,
            (None, None) => "/".to_owned(),
        };
        check_namespace(&namespace)?;
        let auth = match self.auth {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(map)) => map,
            Some(_) => return Err(BuildError::InvalidAuth),
        };
        let setting = |name, ok: bool, reason: &str| {
            if ok {
                Ok(())
            } else {
                Err(BuildError::InvalidSetting {
                    name,
                    reason: reason.to_owned(),
                })
            }
        };
        setting(
            "backoff_initial",
            !self.backoff.initial.is_zero(),
            "must be more than zero",
        )?;
        setting(
            "backoff_max",
            self.backoff.max >= self.backoff.initial,
            "must be at least backoff_initial",
        )?;
        setting(
            "connect_timeout",
            !self.connect_timeout.is_zero(),
            "must be more than zero",
        )?;
        setting(
            "outbox_limits",
            self.outbox_packets > 0 && self.outbox_bytes > 0,
            "must be more than zero",
        )?;
        setting(
            "event_buffer",
            self.event_buffer > 0,
            "must be more than zero",
        )?;
        setting(
            "max_buffered_bytes",
            self.max_buffered_bytes > 0,
            "must be more than zero",
        )?;
        setting(
            "max_message_size",
            self.max_message_size >= 1024,
            "must be at least 1024 bytes",
        )?;
        let tls = match self.tls {
            Some(tls) => tls,
            None => {
                crate::net::trust::default_tls().map_err(|reason| BuildError::InvalidSetting {
                    name: "tls",
                    reason,
                })?
            }
        };
        let proxy = Proxy::new(&self.proxy).map_err(|reason| BuildError::InvalidSetting {
            name: "proxy",
            reason,
        })?;
        let mut transports = Vec::with_capacity(2);
        for transport in self.transports {
            if !transports.contains(&transport) {
                transports.push(transport);
            }
        }
        setting(
            "transports",
            !transports.is_empty(),
            "must name at least one transport",
        )?;
        let net = Arc::new(Net { proxy, tls });
        let headers = handshake_headers(&self.headers)?.into();
        Ok(Config {
            headers,
            http: crate::transport::http::client(Arc::clone(&net)),
            net,
            transports,
            handlers: self.handlers,
            endpoint,
            namespace,
            token: self.token,
            token_provider: self.token_provider,
            auth,
            backoff: self.backoff,
            stable_after: self.stable_after,
            escalate_after: self.escalate_after,
            connect_timeout: self.connect_timeout,
            reconnect_on_server_disconnect: self.reconnect_on_server_disconnect,
            max_attempts: self.max_attempts,
            recovery: self.recovery,
            outbox_packets: self.outbox_packets,
            outbox_bytes: self.outbox_bytes,
            event_buffer: self.event_buffer,
            overflow: self.overflow,
            max_buffered_bytes: self.max_buffered_bytes,
            max_message_size: self.max_message_size,
            max_attachments: self.max_attachments,
        })
    }
}

fn check_namespace(namespace: &str) -> Result<(), BuildError> {
    if !namespace.starts_with('/') {
        return Err(BuildError::InvalidNamespace(format!(
            "{namespace:?} must start with '/'"
        )));
    }
    if namespace.contains(',') || namespace.chars().any(char::is_control) {
        return Err(BuildError::InvalidNamespace(format!(
            "{namespace:?} must not contain ',' or control characters"
        )));
    }
    Ok(())
}

/// Maps the user's URL to the WebSocket URL; returns the namespace its path names, if any.
fn endpoint(raw: &str, path: &str) -> Result<(Endpoint, Option<String>), BuildError> {
    let invalid = |why: &str| BuildError::InvalidUrl(format!("{why} (got {})", redact_url(raw)));
    // `host:port` without a scheme is taken as plain HTTP, as browsers and curl take it.
    let raw = raw.trim();
    let with_scheme;
    let authority = raw.split('/').next().unwrap_or_default();
    let host_port = !raw.contains("://")
        && authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let raw = if host_port {
        with_scheme = format!("http://{raw}");
        &with_scheme
    } else {
        raw
    };
    let mut url = Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(invalid("scheme must be http, https, ws or wss")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    url.set_scheme(scheme)
        .map_err(|()| invalid("cannot use this scheme"))?;
    let namespace = match url.path() {
        "" | "/" => None,
        p => Some(p.trim_end_matches('/').to_owned()),
    };
    if !path.starts_with('/') {
        return Err(BuildError::InvalidSetting {
            name: "path",
            reason: "must start with '/'".into(),
        });
    }
    url.set_path(path);
    let user_query: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "EIO" && k != "transport")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_fragment(None);
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        query
            .append_pair("EIO", "4")
            .append_pair("transport", "websocket");
        for (k, v) in &user_query {
            query.append_pair(k, v);
        }
    }
    let display = redact_url(url.as_str());
    Ok((
        Endpoint {
            ws_url: url,
            display,
        },
        namespace,
    ))
}

/// Checks the extra handshake headers: valid names and values, none of the handshake's own.
/// Errors name the header, never its value.
fn handshake_headers(
    headers: &[(String, String)],
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, BuildError> {
    headers
        .iter()
        .map(|(name, value)| {
            let invalid = |reason: String| BuildError::InvalidSetting {
                name: "header",
                reason,
            };
            // An invalid name is not echoed: it may be a whole `Name: secret` line.
            let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                invalid("a header name is not valid (a token: no spaces, no ':')".to_owned())
            })?;
            let reserved = matches!(name.as_str(), "host" | "upgrade" | "connection")
                || name.as_str().starts_with("sec-websocket-");
            if reserved {
                return Err(invalid(format!(
                    "{name} belongs to the WebSocket handshake and cannot be set"
                )));
            }
            let mut value = http::HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("the value of {name} is not a valid header value")))?;
            value.set_sensitive(true);
            Ok((name, value))
        })
        .collect()
}

/// A URL fit for logs and error messages: no userinfo, no query, no fragment.
pub(crate) fn redact_url(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        // Without a host, what follows the scheme may be `user:secret@...`: none of it shows.
        Ok(url) if url.host_str().is_none() => format!("{}:<no host>", url.scheme()),
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", url.scheme(), url.path())
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

impl Config {
    /// What dialling needs of it.
    pub(crate) fn dial_settings(&self) -> crate::transport::DialSettings<'_> {
        crate::transport::DialSettings {
            ws_url: &self.endpoint.ws_url,
            net: &self.net,
            http: &self.http,
            max_message_size: self.max_message_size,
            headers: &self.headers,
            transports: &self.transports,
            probe_timeout: self.connect_timeout,
        }
    }

    /// What the connection core needs of it.
    pub(crate) fn core_setup(&self) -> Setup {
        Setup {
            namespace: self.namespace.clone(),
            recovery: self.recovery,
            max_attachments: self.max_attachments,
            max_message_size: self.max_message_size,
            connect_timeout: self.connect_timeout,
            reconnect: Settings {
                backoff: self.backoff,
                escalate_after: self.escalate_after,
                stable_after: self.stable_after,
                reconnect_on_server_disconnect: self.reconnect_on_server_disconnect,
                max_attempts: self.max_attempts,
            },
        }
    }

    /// The token for an attempt: from the provider (asked every time) or the configured one.
    pub(crate) async fn credentials(&self) -> Result<Option<Token>, LinkError> {
        let token = match &self.token_provider {
            Some(provider) => Some(provider().await.map_err(LinkError::AuthProvider)?),
            None => self.token.clone(),
        };
        // Defence in depth: the builder refused a blank token, but a provider may return one;
        // nothing is dialled with it.
        if token.as_ref().is_some_and(Token::is_blank) {
            return Err(LinkError::EmptyToken);
        }
        Ok(token)
    }

    /// The CONNECT payload: the user's auth fields plus the token. This string holds the
    /// secret: it goes into the session and nowhere else.
    pub(crate) fn auth_payload(&self, token: Option<&Token>) -> Option<String> {
        if self.auth.is_empty() && token.is_none() {
            return None;
        }
        let mut auth = self.auth.clone();
        if let Some(token) = token {
            auth.insert(
                "token".into(),
                serde_json::Value::String(token.expose().to_owned()),
            );
        }
        Some(serde_json::Value::Object(auth).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(b: ClientBuilder) -> Config {
        b.build().expect("valid config")
    }

    #[test]
    fn extra_headers_are_checked_and_their_values_never_shown() {
        let c = built(ClientBuilder::new("http://h").header("X-Api-Key", "k-secret-1"));
        assert_eq!(c.headers.len(), 1);
        assert_eq!(c.headers[0].0.as_str(), "x-api-key");
        let builder = ClientBuilder::new("http://h").header("X-Api-Key", "k-secret-1");
        assert!(
            !format!("{builder:?}").contains("k-secret-1"),
            "{builder:?}"
        );
        for (name, value) in [
            ("Sec-WebSocket-Key", "x"),
            ("Host", "x"),
            ("Authorization: Bearer k-secret-2", "x"),
            ("X-Ok", "line\nbreak k-secret-2"),
        ] {
            let error = ClientBuilder::new("http://h")
                .header(name, value)
                .build()
                .expect_err("refused");
            let text = error.to_string();
            assert!(!text.contains("k-secret-2"), "{text}");
            assert!(text.contains("header"), "{text}");
        }
    }

    #[test]
    fn host_and_port_without_a_scheme_is_plain_http() {
        let c = built(ClientBuilder::new("127.0.0.1:3000"));
        assert_eq!(
            c.endpoint.ws_url.as_str(),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        let c = built(ClientBuilder::new("localhost:3000/admin"));
        assert_eq!(c.namespace, "/admin");
        assert!(ClientBuilder::new("not a url").build().is_err());
    }

    #[test]
    fn http_urls_map_to_websocket_with_engine_query() {
        let c = built(ClientBuilder::new("http://127.0.0.1:3000"));
        assert_eq!(
            c.endpoint.ws_url.as_str(),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(c.namespace, "/");
        let c = built(ClientBuilder::new("https://example.com/admin?room=a"));
        assert_eq!(
            c.endpoint.ws_url.as_str(),
            "wss://example.com/socket.io/?EIO=4&transport=websocket&room=a"
        );
        assert_eq!(c.namespace, "/admin");
        assert_eq!(c.endpoint.display, "wss://example.com/socket.io/");
        let c = built(ClientBuilder::new("ws://h/").path("/io/").namespace("/x"));
        assert_eq!(
            c.endpoint.ws_url.as_str(),
            "ws://h/io/?EIO=4&transport=websocket"
        );
        assert_eq!(c.namespace, "/x");
    }

    #[test]
    fn bad_urls_are_typed_errors_without_secrets() {
        for url in ["", "not a url", "ftp://h/", "http://", "unix:/tmp/x"] {
            assert!(
                matches!(
                    ClientBuilder::new(url).build(),
                    Err(BuildError::InvalidUrl(_))
                ),
                "{url}"
            );
        }
        let Err(BuildError::InvalidUrl(msg)) =
            ClientBuilder::new("ftp://user:hunter2@h/?token=hunter2").build()
        else {
            panic!("expected invalid url")
        };
        assert!(!msg.contains("hunter2"), "{msg}");
        // Without a scheme or a port, `user:secret@host` parses as scheme `user`.
        let Err(BuildError::InvalidUrl(msg)) = ClientBuilder::new("user:hunter2@h").build() else {
            panic!("expected invalid url")
        };
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn blank_tokens_are_refused_at_build_time() {
        for t in ["", "   ", "\t\n"] {
            assert_eq!(
                ClientBuilder::new("http://h").token(t).build().err(),
                Some(BuildError::EmptyToken)
            );
        }
        assert!(ClientBuilder::new("http://h").token("t").build().is_ok());
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(matches!(
            ClientBuilder::new("http://h").namespace("admin").build(),
            Err(BuildError::InvalidNamespace(_))
        ));
        assert!(matches!(
            ClientBuilder::new("http://h/a").namespace("/b").build(),
            Err(BuildError::InvalidNamespace(_))
        ));
        assert!(matches!(
            ClientBuilder::new("http://h").namespace("/a,b").build(),
            Err(BuildError::InvalidNamespace(_))
        ));
    }

    #[test]
    fn settings_are_checked() {
        for (builder, name) in [
            (
                ClientBuilder::new("http://h").event_buffer(0),
                "event_buffer",
            ),
            (
                ClientBuilder::new("http://h").max_buffered_bytes(0),
                "max_buffered_bytes",
            ),
        ] {
            assert!(
                matches!(builder.build(), Err(BuildError::InvalidSetting { name: n, .. }) if n == name),
                "{name}"
            );
        }
        // Any count and any size a budget can be is honoured: nothing is sized by them.
        let config = ClientBuilder::new("http://h")
            .event_buffer(usize::MAX)
            .max_buffered_bytes(usize::MAX)
            .build()
            .expect("valid");
        assert_eq!(
            (config.event_buffer, config.max_buffered_bytes),
            (usize::MAX, usize::MAX)
        );
        assert!(matches!(
            ClientBuilder::new("http://h")
                .backoff_initial(Duration::ZERO)
                .build(),
            Err(BuildError::InvalidSetting {
                name: "backoff_initial",
                ..
            })
        ));
        assert!(matches!(
            ClientBuilder::new("http://h")
                .backoff_initial(Duration::from_secs(5))
                .backoff_max(Duration::from_secs(1))
                .build(),
            Err(BuildError::InvalidSetting {
                name: "backoff_max",
                ..
            })
        ));
        assert_eq!(
            ClientBuilder::new("http://h")
                .auth(serde_json::json!([1]))
                .build()
                .err(),
            Some(BuildError::InvalidAuth)
        );
    }

    #[test]
    fn debug_output_has_no_token() {
        let b = ClientBuilder::new("http://h").token("hunter2");
        assert!(!format!("{b:?}").contains("hunter2"));
        assert!(!format!("{:?}", b.build().expect("valid")).contains("hunter2"));
    }
}
