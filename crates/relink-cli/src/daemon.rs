//! `relink daemon`: JSON-RPC 2.0 control of a socket for other processes.
//!
//! HTTP and WebSocket share one loopback port. On start the daemon prints one JSON line,
//! `{"url":"http://127.0.0.1:PORT","secret_file":"PATH"}`: PATH (mode 0600, in a fresh
//! directory of mode 0700, removed on exit) holds a random secret that every request and
//! WebSocket upgrade must present as `Authorization: Bearer <secret>`. Requests whose `Host`
//! is not this loopback address and port, or whose `Origin` (sent by browsers) is not a
//! loopback origin of this port, are refused before any JSON-RPC processing, so a web page
//! cannot drive the daemon, even through DNS rebinding. The methods are in [`crate::rpc`];
//! the bounds on connections are in [`accept`].

pub(crate) mod accept;
mod request_ids;

use crate::cli::DaemonArgs;
use crate::exit::CliError;
use crate::rpc;
use futures_util::FutureExt;
use futures_util::future::{Either, Ready, ready};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse, Server, ServerConfig};
use request_ids::RequestIds;
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// How long stopping waits for open connections to finish their requests.
const STOP_GRACE: Duration = Duration::from_millis(300);
/// The largest request body; jsonrpsee's default.
const MAX_REQUEST_BODY: u32 = 10 * 1024 * 1024;
/// Connections that may wait for their first request's headers at once (see [`accept`]).
const MAX_AWAITING_HEADERS: usize = 64;

/// The line printed on stdout once the daemon listens.
#[derive(Serialize)]
struct ReadyLine<'a> {
    url: &'a str,
    secret_file: &'a Path,
}

pub(crate) async fn run(
    args: DaemonArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CliError> {
    let requested = args.listen;
    if !requested.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "refusing to listen on {requested}: the daemon listens on loopback only \
             (127.0.0.0/8 or [::1])"
        )));
    }
    let mut stop = std::pin::pin!(stop);
    if (&mut stop).now_or_never().is_some() {
        return Ok(());
    }

    if args.header_timeout.is_zero() {
        return Err(CliError::Usage(
            "--header-timeout must be longer than zero".into(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(requested)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {requested}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(format!("cannot read the listening address: {e}")))?;
    let secret = Secret::generate();
    let guard = Guard::new(&secret, addr);
    let secret_file = SecretFile::create(&secret)?;

    let daemon = Arc::new(rpc::Daemon::new(args.overflow.into()));
    let module = rpc::module(Arc::clone(&daemon))
        .map_err(|e| CliError::Other(format!("cannot register the methods: {e}")))?;
    let (stop_handle, server_handle) = jsonrpsee::server::stop_channel();
    let services = Server::builder()
        .set_config(
            ServerConfig::builder()
                .max_request_body_size(MAX_REQUEST_BODY)
                .build(),
        )
        .set_http_middleware(tower::ServiceBuilder::new().layer(guard).layer(RequestIds {
            max_body: MAX_REQUEST_BODY,
        }))
        .to_service_builder();
    let methods = jsonrpsee::server::Methods::from(module);
    let make_service = {
        let stop_handle = stop_handle.clone();
        move || services.clone().build(methods.clone(), stop_handle.clone())
    };
    let limits = accept::Limits {
        header_timeout: args.header_timeout,
        awaiting_headers: MAX_AWAITING_HEADERS,
    };
    let server = tokio::spawn(accept::serve(listener, make_service, stop_handle, limits));

    let url = format!("http://{addr}");
    announce(&ReadyLine {
        url: &url,
        secret_file: secret_file.path(),
    })?;
    tracing::info!(%url, "daemon listening");

    stop.await;
    tracing::info!("daemon stopping");
    let _ = server_handle.stop();
    let _ = tokio::time::timeout(STOP_GRACE, server).await;
    daemon.shutdown().await;
    drop(secret_file);
    Ok(())
}

fn announce(ready: &ReadyLine<'_>) -> Result<(), CliError> {
    let line = serde_json::to_string(ready)
        .map_err(|e| CliError::Other(format!("cannot encode the ready line: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Other(format!("cannot write to stdout: {e}")))
}

/// 32 random bytes, hex: what clients present as `Authorization: Bearer <secret>`.
struct Secret(String);

impl Secret {
    fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Secret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The secret's file, in a directory of its own; both are removed on drop.
struct SecretFile {
    dir: PathBuf,
    path: PathBuf,
}

impl SecretFile {
    fn create(secret: &Secret) -> Result<Self, CliError> {
        let suffix: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!(
            "relink-daemon-{}-{suffix:016x}",
            std::process::id()
        ));
        let io = |what: &str, path: &Path, e: std::io::Error| {
            CliError::Other(format!("cannot {what} {}: {e}", path.display()))
        };
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        // `create`, not `create_all`: a directory that already exists is not ours.
        builder
            .create(&dir)
            .map_err(|e| io("create the directory", &dir, e))?;
        crate::signal::remove_at_forced_exit(&dir);
        let file = SecretFile {
            path: dir.join("secret"),
            dir,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut handle = options
            .open(&file.path)
            .map_err(|e| io("create", &file.path, e))?;
        handle
            .write_all(secret.0.as_bytes())
            .map_err(|e| io("write", &file.path, e))?;
        Ok(file)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "secret directory not removed");
        }
        crate::signal::keep_at_forced_exit(&self.dir);
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `Host` missing, repeated, or not this loopback address and port.
    Host,
    /// `Origin` present and not a loopback origin of this port.
    Origin,
    /// `Authorization: Bearer <secret>` missing or wrong.
    Secret,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::Secret => "secret",
        }
    }

    fn response(self) -> HttpResponse {
        let (status, text) = match self {
            Refusal::Host => (
                403,
                "forbidden: Host must be this daemon's loopback address\n",
            ),
            Refusal::Origin => (403, "forbidden: cross-origin requests are refused\n"),
            Refusal::Secret => (
                401,
                "unauthorized: send Authorization: Bearer <the secret file's content>\n",
            ),
        };
        // Closed after the answer: a stranger must not keep a connection by sending one
        // refused request after another (each would reset the header timeout).
        let mut builder = HttpResponse::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .header("connection", "close");
        if self == Refusal::Secret {
            builder = builder.header("www-authenticate", "Bearer");
        }
        builder
            .body(HttpBody::from(text))
            .unwrap_or_else(|_| jsonrpsee::server::http::response::denied())
    }
}

/// The tower layer in front of jsonrpsee: checks `Host`, `Origin` and the secret on every
/// HTTP request and WebSocket upgrade. (Request bodies stay out of the logs because
/// [`crate::telemetry`] caps jsonrpsee's logging above TRACE.)
#[derive(Clone)]
struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    secret: Box<[u8]>,
    /// The address the daemon listens on (`127.0.0.2:PORT`, `[::1]:PORT`, ...) and
    /// `localhost:PORT`: the names a local client can reach it by.
    hosts: [String; 2],
}

impl Guard {
    /// A guard for a daemon listening on `addr`, a loopback address.
    fn new(secret: &Secret, addr: SocketAddr) -> Self {
        Guard {
            inner: Arc::new(GuardInner {
                secret: secret.0.as_bytes().into(),
                hosts: [addr.to_string(), format!("localhost:{}", addr.port())],
            }),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.inner
            .hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        origin
            .get(.."http://".len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
            && origin
                .get("http://".len()..)
                .is_some_and(|host| self.host_allowed(host))
    }

    fn check(&self, request: &HttpRequest) -> Result<(), Refusal> {
        let headers = request.headers();
        let mut hosts = headers.get_all("host").iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(host), None) => host.to_str().ok(),
            (None, None) => request.uri().authority().map(|a| a.as_str()),
            _ => None,
        };
        if !host.is_some_and(|h| self.host_allowed(h)) {
            return Err(Refusal::Host);
        }
        if !headers
            .get_all("origin")
            .iter()
            .all(|o| o.to_str().is_ok_and(|o| self.origin_allowed(o)))
        {
            return Err(Refusal::Origin);
        }
        let mut auth = headers.get_all("authorization").iter();
        let presented = match (auth.next(), auth.next()) {
            (Some(value), None) => bearer(value.as_bytes()),
            _ => None,
        };
        match presented {
            Some(p) if same_secret(p, &self.inner.secret) => Ok(()),
            _ => Err(Refusal::Secret),
        }
    }
}

/// The credentials of `Bearer <credentials>` (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    Some(rest.trim_ascii())
}

/// Compares in time that depends on the length only (the length is public: 64 for the
/// daemon's secret).
pub(crate) fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    if presented.len() != secret.len() {
        return false;
    }
    let diff = presented
        .iter()
        .zip(secret)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

impl<S> Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: self.clone(),
        }
    }
}

/// [`Guard`] applied to jsonrpsee's service.
#[derive(Clone)]
struct Guarded<S> {
    inner: S,
    guard: Guard,
}

impl<S> Service<HttpRequest> for Guarded<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Either<Ready<Result<HttpResponse, BoxError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        if let Err(refusal) = self.guard.check(&request) {
            tracing::warn!(reason = refusal.reason(), "request refused");
            return Either::Left(ready(Ok(refusal.response())));
        }
        // Checked: nothing further in needs the secret, so nothing can log it.
        request.headers_mut().remove("authorization");
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    fn guard(secret: &str) -> Guard {
        Guard::new(
            &Secret(secret.to_owned()),
            SocketAddr::from(([127, 0, 0, 1], 4242)),
        )
    }

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        let mut builder = HttpRequest::builder().method("POST").uri("/");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(HttpBody::default()).expect("valid request")
    }

    #[test]
    fn requests_need_host_origin_and_secret_right() {
        let g = guard("s3cret");
        let ok = [
            ("host", "127.0.0.1:4242"),
            ("authorization", "Bearer s3cret"),
        ];
        assert_eq!(g.check(&request(&ok)), Ok(()));
        for host in ["localhost:4242", "LOCALHOST:4242"] {
            let r = request(&[("host", host), ("authorization", "bearer s3cret")]);
            assert_eq!(g.check(&r), Ok(()), "{host}");
        }
        for host in [
            "evil.example:4242",
            "127.0.0.1:4243",
            "127.0.0.1",
            "",
            "127.0.0.2:4242",
        ] {
            let r = request(&[("host", host), ok[1]]);
            assert_eq!(g.check(&r), Err(Refusal::Host), "{host}");
        }
        assert_eq!(
            g.check(&request(&[ok[1]])),
            Err(Refusal::Host),
            "no Host at all"
        );
        for origin in ["http://localhost:4242", "http://127.0.0.1:4242"] {
            let r = request(&[ok[0], ok[1], ("origin", origin)]);
            assert_eq!(g.check(&r), Ok(()), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:1",
            "https://127.0.0.1:4242",
        ] {
            let r = request(&[ok[0], ok[1], ("origin", origin)]);
            assert_eq!(g.check(&r), Err(Refusal::Origin), "{origin}");
        }
        for auth in [
            "Bearer wrong!",
            "Bearer s3cre",
            "Basic s3cret",
            "s3cret",
            "Bearer",
        ] {
            let r = request(&[ok[0], ("authorization", auth)]);
            assert_eq!(g.check(&r), Err(Refusal::Secret), "{auth}");
        }
        assert_eq!(g.check(&request(&[ok[0]])), Err(Refusal::Secret));
    }

    #[test]
    fn the_host_allowed_is_the_address_listened_on() {
        for (addr, host, origin) in [
            ("127.0.0.2:4242", "127.0.0.2:4242", "http://127.0.0.2:4242"),
            ("[::1]:4242", "[::1]:4242", "http://[::1]:4242"),
            ("[::1]:4242", "localhost:4242", "http://localhost:4242"),
        ] {
            let g = Guard::new(&Secret("s3cret".into()), addr.parse().expect("addr"));
            let r = request(&[
                ("host", host),
                ("authorization", "Bearer s3cret"),
                ("origin", origin),
            ]);
            assert_eq!(g.check(&r), Ok(()), "{addr} {host}");
            let r = request(&[
                ("host", "127.0.0.1:4242"),
                ("authorization", "Bearer s3cret"),
            ]);
            assert_eq!(g.check(&r), Err(Refusal::Host), "{addr}: another address");
        }
    }

    #[test]
    fn refusals_are_401_or_403_without_json() {
        assert_eq!(Refusal::Secret.response().status().as_u16(), 401);
        assert_eq!(Refusal::Origin.response().status().as_u16(), 403);
        assert_eq!(Refusal::Host.response().status().as_u16(), 403);
    }

    #[test]
    fn secrets_are_64_hex_digits_and_differ() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_eq!(a.0.len(), 64);
        assert!(a.0.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.0, b.0);
    }
}
