//! Which proxy a connection goes through, and the tunnel through it.
//!
//! The rules are hyper-util's: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (lower
//! case too) read as curl reads them, a CONNECT tunnel for `http://` proxies with Basic
//! credentials from the proxy URL, SOCKS5 for `socks5://` and `socks5h://`. Both transports
//! tunnel, plain `http://` servers included, so a proxy sees only where we connect.
//!
//! The proxy's credentials live inside hyper-util's matcher, which never prints them; the
//! messages here name the proxy by host and port only.

use crate::error::LinkError;
use crate::net::Target;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use tokio::net::TcpStream;
use tower_service::Service;

/// The proxy rule of one client.
pub(crate) struct Proxy {
    matcher: Option<Matcher>,
}

/// The proxy setting as the builder takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum ProxyChoice {
    /// The environment's variables (the default).
    #[default]
    Environment,
    /// Never a proxy.
    Off,
    /// This proxy for every connection (the URL may hold credentials: never shown).
    Url(String),
}

impl Proxy {
    /// The rule `choice` describes; an unusable proxy URL is refused here, with a message
    /// that does not repeat it (it may hold a password).
    pub(crate) fn new(choice: &ProxyChoice) -> Result<Self, String> {
        let matcher = match choice {
            ProxyChoice::Off => None,
            ProxyChoice::Environment => Some(Matcher::from_env()),
            ProxyChoice::Url(raw) => {
                let url = url::Url::parse(raw.trim()).map_err(|e| {
                    format!("the proxy URL does not parse ({e}); expected http://host:port")
                })?;
                if !matches!(url.scheme(), "http" | "socks5" | "socks5h") {
                    return Err(format!(
                        "proxy scheme {} is not supported: use http://, socks5:// or socks5h://",
                        url.scheme()
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err("the proxy URL has no host".into());
                }
                Some(Matcher::builder().all(raw.trim().to_owned()).build())
            }
        };
        Ok(Proxy { matcher })
    }

    /// The proxy to go through for `target`, if any.
    pub(crate) fn route(&self, target: &Target) -> Option<Route> {
        let matcher = self.matcher.as_ref()?;
        let scheme = if target.tls { "https" } else { "http" };
        let uri: http::Uri = format!("{scheme}://{}/", target.authority()).parse().ok()?;
        matcher.intercept(&uri).map(Route)
    }
}

/// A proxy that applies to one target.
pub(crate) struct Route(Intercept);

impl Route {
    /// `host:port` of the proxy, for messages (never its credentials).
    fn shown(&self) -> String {
        let uri = self.0.uri();
        let host = uri.host().unwrap_or_default();
        match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// A TCP stream to `target` through the proxy.
    pub(crate) async fn connect(&self, target: &Target) -> Result<TcpStream, LinkError> {
        let proxy = self.shown();
        let failed = |message: String| LinkError::Proxy {
            proxy: proxy.clone(),
            message,
        };
        let scheme = if target.tls { "https" } else { "http" };
        let dst: http::Uri = format!("{scheme}://{}/", target.authority())
            .parse()
            .map_err(|_| {
                LinkError::InvalidUrl(format!("cannot tunnel to {}", target.authority()))
            })?;
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        let uri = self.0.uri().clone();
        match uri.scheme_str() {
            Some("socks5" | "socks5h") => {
                let mut socks = SocksV5::new(uri.clone(), inner)
                    // socks5h: the proxy resolves names (the curl convention).
                    .local_dns(uri.scheme_str() == Some("socks5"));
                if let Some((user, pass)) = self.0.raw_auth() {
                    socks = socks.with_auth(user.to_owned(), pass.to_owned());
                }
                std::future::poll_fn(|cx| socks.poll_ready(cx))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let io = socks.call(dst).await.map_err(|e| failed(e.to_string()))?;
                Ok(io.into_inner())
            }
            Some("http") => {
                let mut tunnel = Tunnel::new(uri, inner);
                let sent_credentials = self.0.basic_auth().is_some();
                if let Some(auth) = self.0.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                std::future::poll_fn(|cx| tunnel.poll_ready(cx))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                match tunnel.call(dst).await {
                    Ok(io) => Ok(io.into_inner()),
                    Err(e) => Err(tunnel_error(&e, &proxy, sent_credentials)),
                }
            }
            other => Err(failed(format!(
                "proxy scheme {} is not supported: use http://, socks5:// or socks5h://",
                other.unwrap_or("(none)")
            ))),
        }
    }
}

/// hyper-util does not export its tunnel error type; its variant names are what tell a 407
/// from the rest (a test against a real 407 keeps this honest).
fn tunnel_error(
    error: &(dyn std::error::Error + 'static),
    proxy: &str,
    sent_credentials: bool,
) -> LinkError {
    let variant = format!("{error:?}");
    if variant.starts_with("ProxyAuthRequired") {
        return LinkError::ProxyAuth {
            proxy: proxy.to_owned(),
            sent_credentials,
        };
    }
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    if variant.starts_with("TunnelUnsuccessful") {
        message = "the proxy refused to open a tunnel to the server".into();
    }
    LinkError::Proxy {
        proxy: proxy.to_owned(),
        message,
    }
}
