//! HTTPS with rustls, and client certificates (mTLS) for the doors that authenticate by certificate.
//!
//! When a client CA is configured, clients *may* present a certificate signed by it (the native API
//! still works with tokens and no certificate); a certificate from another CA, or one revoked by the
//! configured CRLs, fails the handshake.
//! The verified leaf certificate's issuer, subject and serial reach handlers as a [`PeerCert`]
//! request extension.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use credvault_core::app::ClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tower_http::add_extension::AddExtension;

/// The client certificate of the connection, if the client presented one (already verified).
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<ClientCert>);

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Build the server's TLS configuration.
pub fn config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_crl: Option<&Path>,
) -> Result<RustlsConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(&format!("reading {}", cert.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&format!("parsing {}", cert.display()), e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(&format!("reading the key {}", key.display()), e))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| err(&format!("reading {}", ca.display()), e))?
            {
                roots
                    .add(c.map_err(|e| err(&format!("parsing {}", ca.display()), e))?)
                    .map_err(|e| err("client CA", e))?;
            }
            let mut crls = Vec::new();
            if let Some(crl) = client_crl {
                for c in CertificateRevocationListDer::pem_file_iter(crl)
                    .map_err(|e| err(&format!("reading {}", crl.display()), e))?
                {
                    crls.push(c.map_err(|e| err(&format!("parsing {}", crl.display()), e))?);
                }
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .with_crls(crls)
                .allow_unauthenticated()
                .build()
                .map_err(|e| err("client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate and key", e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(cfg)))
}

/// Read issuer, subject and serial out of a DER certificate.
pub fn client_cert(der: &[u8]) -> Option<ClientCert> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(ClientCert {
        issuer: c.issuer().to_string(),
        subject: c.subject().to_string(),
        serial_hex: c.raw_serial_as_string().replace(':', ""),
    })
}

/// A rustls acceptor that hands the peer certificate to every request of the connection.
#[derive(Clone)]
pub struct CertAcceptor {
    inner: RustlsAcceptor,
}

impl CertAcceptor {
    pub fn new(config: RustlsConfig) -> Self {
        Self {
            inner: RustlsAcceptor::new(config),
        }
    }
}

impl<I, S> Accept<I, S> for CertAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = TlsStream<I>;
    type Service = AddExtension<S, PeerCert>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let acceptor = self.inner.clone();
        Box::pin(async move {
            let (stream, service) = acceptor.accept(stream, service).await?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| client_cert(c));
            Ok((stream, AddExtension::new(service, PeerCert(peer))))
        })
    }
}
