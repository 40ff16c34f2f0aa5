//! Reaching a server: TCP, through a proxy when one applies, then TLS for `https`/`wss`.
//!
//! WebSocket and long-polling both connect here, so a proxy, the trust store and the
//! error words apply to both alike.

pub(crate) mod proxy;
pub(crate) mod trust;

use crate::error::LinkError;
use proxy::Proxy;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// A connected byte stream, TLS or not.
pub(crate) type Stream = MaybeTlsStream<TcpStream>;

/// Where to connect: what a URL says once its scheme is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    /// The host without brackets (an IPv6 address is bare).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    /// `http`/`ws` are plain, `https`/`wss` TLS; the port defaults by scheme.
    pub(crate) fn new(scheme: &str, host: &str, port: Option<u16>) -> Result<Self, LinkError> {
        let tls = match scheme {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => return Err(LinkError::InvalidUrl(format!("unsupported scheme {other}"))),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(LinkError::InvalidUrl("missing host".into()));
        }
        Ok(Target {
            tls,
            host: host.to_owned(),
            port: port.unwrap_or(if tls { 443 } else { 80 }),
        })
    }

    pub(crate) fn from_url(url: &url::Url) -> Result<Self, LinkError> {
        Self::new(url.scheme(), url.host_str().unwrap_or_default(), url.port())
    }

    pub(crate) fn from_uri(uri: &http::Uri) -> Result<Self, LinkError> {
        Self::new(
            uri.scheme_str().unwrap_or_default(),
            uri.host().unwrap_or_default(),
            uri.port_u16(),
        )
    }

    /// `host:port`, bracketed for IPv6, for messages.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How this client reaches servers: its proxy rule and its TLS trust.
pub(crate) struct Net {
    pub(crate) proxy: Proxy,
    pub(crate) tls: Arc<rustls::ClientConfig>,
}

impl Net {
    /// TCP (direct or tunnelled through the proxy), then TLS if the target wants it.
    pub(crate) async fn connect(&self, target: &Target) -> Result<Stream, LinkError> {
        let tcp = match self.proxy.route(target) {
            Some(route) => route.connect(target).await?,
            None => TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|e| LinkError::Network(e.to_string()))?,
        };
        // Small frames go out at once: a Socket.IO client is latency-bound.
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|_| {
            LinkError::InvalidUrl(format!("{} is not a valid TLS name", target.host))
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(MaybeTlsStream::Rustls(stream)),
            Err(io) => Err(trust::tls_error(&io, target)),
        }
    }
}
