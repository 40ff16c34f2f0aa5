//! Which proxy a connection goes through, and the tunnel through it.
//!
//! The rules are hyper-util's: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (lower
//! case too) read as curl reads them (and, as curl does, a proxy variable that cannot be
//! used is refused, not skipped), a CONNECT tunnel for `http://` proxies with Basic
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

/// Never shows the URL: it may hold a password.
impl std::fmt::Debug for ProxyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyChoice::Environment => "Environment",
            ProxyChoice::Off => "Off",
            ProxyChoice::Url(_) => "Url(<hidden>)",
        })
    }
}

/// The proxy rule of one client.
pub(crate) struct Proxy {
    matcher: Option<Matcher>,
}

/// The proxy setting as the builder takes it.
#[derive(Clone, Default, PartialEq, Eq)]
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
            ProxyChoice::Environment => {
                check_environment(|name| std::env::var_os(name))?;
                Some(Matcher::from_env())
            }
            ProxyChoice::Url(raw) => Some(usable(raw)?),
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

/// The variables the environment's rule reads for proxies (`NO_PROXY` aside).
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Refuses a proxy variable that cannot be used, as curl does: hyper-util's matcher skips
/// one it cannot read, which would mean a direct connection without a word. The message
/// names the variable, never its value (it may hold a password).
fn check_environment(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<(), String> {
    for name in PROXY_VARIABLES {
        let Some(value) = var(name) else { continue };
        let fix = "set it to scheme://[user:password@]host:port, or unset it";
        let value = value
            .to_str()
            .ok_or_else(|| format!("the environment's {name} is not UTF-8: {fix}"))?
            .trim();
        if value.is_empty() {
            continue;
        }
        // As curl reads it: without a scheme, an http:// proxy.
        let url = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        usable(&url).map_err(|e| format!("the environment's {name}: {e}; {fix}"))?;
    }
    Ok(())
}

/// The matcher for one proxy URL, or why it cannot be used (without repeating it).
fn usable(raw: &str) -> Result<Matcher, String> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| format!("the proxy URL does not parse ({e}); expected http://host:port"))?;
    if !matches!(url.scheme(), "http" | "socks5" | "socks5h") {
        return Err(format!(
            "proxy scheme {} is not supported: use http://, socks5:// or socks5h://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the proxy URL has no host".into());
    }
    // url's normal form (percent-encoded userinfo, punycode host) is what the matcher's
    // stricter parser accepts; checked below all the same, since a URL it cannot read would
    // silently mean "no proxy".
    let matcher = Matcher::builder().all(url.as_str().to_owned()).build();
    let probe: http::Uri = "http://relink.invalid/".parse().map_err(|_| "")?;
    if matcher.intercept(&probe).is_none() {
        return Err(
            "the proxy URL cannot be used (expected scheme://[user:password@]host:port)".into(),
        );
    }
    Ok(matcher)
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
        let credentials = self.0.basic_auth().is_some() || self.0.raw_auth().is_some();
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
        // It dials the proxy, whose URI may say socks5://.
        inner.enforce_http(false);
        let uri = with_default_port(self.0.uri());
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
                    .map_err(|e| failed(with_causes(&e)))?;
                match socks.call(dst).await {
                    Ok(io) => Ok(io.into_inner()),
                    // hyper-util does not export its SOCKS error type either.
                    Err(e) if format!("{e:?}").contains("Auth(") => Err(LinkError::ProxyAuth {
                        proxy,
                        sent_credentials: credentials,
                    }),
                    Err(e) => Err(failed(with_causes(&e))),
                }
            }
            Some("http") => {
                let mut tunnel = Tunnel::new(uri, inner);
                let sent_credentials = self.0.basic_auth().is_some();
                if let Some(auth) = self.0.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                std::future::poll_fn(|cx| tunnel.poll_ready(cx))
                    .await
                    .map_err(|e| failed(with_causes(&e)))?;
                match tunnel.call(dst).await {
                    Ok(io) => Ok(io.into_inner()),
                    Err(e) => Err(tunnel_error(&e, &proxy, sent_credentials)),
                }
            }
            other => Err(LinkError::ProxyUnsupported {
                proxy,
                scheme: other.unwrap_or_default().to_owned(),
            }),
        }
    }
}

/// The proxy's URI with the port its scheme implies when it names none (1080 for SOCKS,
/// as curl does; hyper-util would dial 80).
fn with_default_port(uri: &http::Uri) -> http::Uri {
    let socks = matches!(uri.scheme_str(), Some("socks5" | "socks5h"));
    if !socks || uri.port_u16().is_some() {
        return uri.clone();
    }
    let host = uri.host().unwrap_or_default();
    format!("{}://{host}:1080/", uri.scheme_str().unwrap_or("socks5"))
        .parse()
        .unwrap_or_else(|_| uri.clone())
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
    let mut message = with_causes(error);
    if variant.starts_with("TunnelUnsuccessful") {
        message = "the proxy refused to open a tunnel to the server".into();
    }
    LinkError::Proxy {
        proxy: proxy.to_owned(),
        message,
    }
}

/// An error and its causes, one after the other (hyper-util's errors say "failed to create
/// underlying connection" and keep the why in their source).
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_proxies_default_to_port_1080() {
        let uri = |s: &str| s.parse::<http::Uri>().expect("valid");
        assert_eq!(
            with_default_port(&uri("socks5h://proxy/")).to_string(),
            "socks5h://proxy:1080/"
        );
        assert_eq!(
            with_default_port(&uri("socks5://proxy:9050/")).to_string(),
            "socks5://proxy:9050/"
        );
        assert_eq!(
            with_default_port(&uri("http://proxy/")).to_string(),
            "http://proxy/"
        );
    }

    #[test]
    fn a_proxy_url_is_refused_unless_it_can_be_used_and_never_echoed() {
        for ok in [
            "http://proxy:3128",
            "http://us%20er:p@ss^w|rd@proxy:3128",
            "socks5h://u:p@proxy",
        ] {
            assert!(Proxy::new(&ProxyChoice::Url(ok.into())).is_ok(), "{ok}");
        }
        for bad in [
            "https://u:s3cret@proxy:443",
            "socks4://u:s3cret@proxy",
            "http://",
            "s3cret",
        ] {
            let error = Proxy::new(&ProxyChoice::Url(bad.into())).err().expect(bad);
            assert!(!error.contains("s3cret"), "{error}");
        }
        assert_eq!(
            format!("{:?}", ProxyChoice::Url("http://u:s3cret@p:1".into())),
            "Url(<hidden>)"
        );
    }

    #[test]
    fn a_proxy_variable_that_cannot_be_used_is_refused_by_name_not_ignored() {
        let env = |name: &'static str, value: &'static str| {
            move |n: &str| (n == name).then(|| std::ffi::OsString::from(value))
        };
        for (name, ok) in [
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("https_proxy", "proxy:3128"),
            ("ALL_PROXY", "socks5h://u:p@proxy"),
            ("HTTP_PROXY", "  "),
        ] {
            assert_eq!(check_environment(env(name, ok)), Ok(()), "{name}={ok}");
        }
        for (name, bad) in [
            ("HTTPS_PROXY", "ftp://u:s3cret@proxy"),
            ("HTTPS_PROXY", "::::x"),
            ("http_proxy", "http://[::1"),
            ("HTTP_PROXY", "http://127.0.0.1:notaport"),
            ("all_proxy", "https://u:s3cret@proxy:443"),
        ] {
            let error = check_environment(env(name, bad)).expect_err(bad);
            assert!(error.contains(name), "{error}");
            assert!(!error.contains("s3cret") && !error.contains(bad), "{error}");
        }
        assert_eq!(check_environment(|_| None), Ok(()));
    }
}
