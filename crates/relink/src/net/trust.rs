//! TLS trust: which roots a `wss://` or `https://` server's certificate must chain to.
//!
//! A module of its own so that the configuration (which builds the default when the user
//! gives none) and the transport (which dials with it) do not import each other.

use std::sync::Arc;

/// rustls with the Mozilla roots from webpki-roots, ring as the crypto provider.
pub(crate) fn default_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}
