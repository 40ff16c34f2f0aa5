//! A TLS front with a certificate from a private CA, for trust tests.
//!
//! [`TlsFront`] makes a CA of its own (rcgen), a server certificate it signs for
//! `localhost` and `127.0.0.1`, and terminates TLS on `127.0.0.1:0`, forwarding the plain
//! bytes to an upstream (the Node server). A client trusts it only when told about the CA
//! ([`TlsFront::ca_pem`]). Dropping it stops it and every connection.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A running TLS front.
pub struct TlsFront {
    addr: SocketAddr,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for TlsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFront")
            .field("addr", &self.addr)
            .finish()
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl TlsFront {
    /// Listens on `127.0.0.1:0`, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<TlsFront> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "relink-testkit private CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(invalid)?)
            .map_err(invalid)?;
        let server_key = KeyPair::generate().map_err(invalid)?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(invalid)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "relink-testkit server");
        let cert = params.signed_by(&server_key, &ca).map_err(invalid)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .map_err(invalid)?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(crate::accept::each(listener, move |stream| {
            serve(stream, acceptor.clone(), upstream)
        }));
        Ok(TlsFront {
            addr,
            ca_pem: ca.as_ref().pem(),
            ca_der: ca.as_ref().der().clone(),
            task,
        })
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// The private CA's certificate, PEM (for `SSL_CERT_FILE`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The private CA's certificate, DER (for a rustls root store).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, acceptor: TlsAcceptor, upstream: SocketAddr) {
    // A client that refuses the certificate ends the handshake: nothing to forward.
    let Ok(mut tls) = acceptor.accept(stream).await else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
}
