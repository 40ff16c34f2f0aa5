//! TLS trust: which roots a `wss://` or `https://` server's certificate must chain to, and
//! what a refused certificate is called.
//!
//! The roots are the operating system's (rustls-native-certs), where a company CA that
//! re-signs TLS is installed, with `SSL_CERT_FILE` / `SSL_CERT_DIR` honoured on every
//! platform, as OpenSSL does. rustls-native-certs rather than rustls-platform-verifier:
//! it yields a root store, so the bundled Mozilla roots can stand in on a system that has
//! none (a bare container), and one code path behaves the same on Linux, macOS and
//! Windows, which is what the tests here can check.

use crate::error::LinkError;
use crate::net::Target;
use std::sync::{Arc, OnceLock};

/// The default configuration, built once per process (reading the store takes a few
/// milliseconds; the environment it reads does not change under a running program).
pub(crate) fn default_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static DEFAULT: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    DEFAULT.get_or_init(build_default).clone()
}

fn build_default() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "could not read part of the system's trusted certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "unusable certificates in the system's trust store");
    }
    if roots.is_empty() {
        tracing::debug!("no trusted certificates in the system: using the bundled roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The rustls error inside an IO error, if that is what it is.
pub(crate) fn rustls_error(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// What a failed TLS handshake means, in words a user can act on.
pub(crate) fn tls_error(io: &std::io::Error, target: &Target) -> LinkError {
    match rustls_error(io) {
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            LinkError::NotTls
        }
        Some(rustls::Error::InvalidCertificate(problem)) => LinkError::Certificate {
            server: target.authority(),
            problem: describe(problem, &target.host),
        },
        Some(other) => LinkError::Tls(other.to_string()),
        None => LinkError::Network(io.to_string()),
    }
}

fn describe(problem: &rustls::CertificateError, host: &str) -> String {
    use rustls::CertificateError as E;
    match problem {
        E::UnknownIssuer => "it is signed by a certificate authority this system does not trust. \
            If your network re-signs TLS with its own CA, add that CA to the system's trust \
            store or point SSL_CERT_FILE at it"
            .into(),
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            format!("it is not issued for {host}: check the URL's host name")
        }
        E::Expired | E::ExpiredContext { .. } => "it has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "it is not valid yet: check this computer's clock".into()
        }
        E::Revoked => "it has been revoked".into(),
        other => format!("{other:?}"),
    }
}
