//! TLS for node-to-node and client traffic, on rustls (ring): mutual, so a node
//! talks only to peers and clients whose certificate the cluster's CA signed, and
//! they check the node's the same way.

use axum::serve::Listener;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The PEM files of a node or client: the cluster's CA certificate, and this
/// party's certificate (signed by that CA; for a node, naming the address it is
/// reached at) and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate that signs every node's and client's certificate.
    pub ca: PathBuf,
    /// This node's or client's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, crate::Error> {
    std::fs::read(path).map_err(|e| crate::Error::Other(format!("{}: cannot read the {what}: {e}", path.display())))
}

fn bad(path: &Path, what: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Other(format!("{}: not a usable {what}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loaded TLS material.
#[derive(Clone)]
pub(crate) struct Tls {
    server: Arc<ServerConfig>,
    ca_pem: Vec<u8>,
    identity_pem: Vec<u8>,
}

impl Tls {
    pub(crate) fn load(files: &TlsFiles) -> Result<Tls, crate::Error> {
        let ca_pem = read(&files.ca, "CA certificate")?;
        let cert_pem = read(&files.cert, "certificate")?;
        let key_pem = read(&files.key, "private key")?;
        let mut roots = RootCertStore::empty();
        let cas: Vec<_> = CertificateDer::pem_slice_iter(&ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&files.ca, "CA certificate", e))?;
        if cas.is_empty() {
            return Err(bad(&files.ca, "CA certificate", "no certificate in it"));
        }
        for c in cas {
            roots.add(c).map_err(|e| bad(&files.ca, "CA certificate", e))?;
        }
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&files.cert, "certificate", e))?;
        if chain.is_empty() {
            return Err(bad(&files.cert, "certificate", "no certificate in it"));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad(&files.key, "private key", e))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| bad(&files.ca, "CA certificate", e))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| crate::Error::Other(format!("TLS: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| bad(&files.cert, "certificate and key pair", e))?;
        let mut identity_pem = key_pem;
        identity_pem.push(b'\n');
        identity_pem.extend_from_slice(&cert_pem);
        Ok(Tls { server: Arc::new(server), ca_pem, identity_pem })
    }

    /// An HTTP client that trusts only the cluster's CA and presents this party's
    /// certificate.
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, crate::Error> {
        let ca =
            reqwest::Certificate::from_pem(&self.ca_pem).map_err(|e| crate::Error::Other(format!("TLS CA: {e}")))?;
        let id = reqwest::Identity::from_pem(&self.identity_pem)
            .map_err(|e| crate::Error::Other(format!("TLS certificate and key: {e}")))?;
        crate::network::http_builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(id)
            .https_only(true)
            .build()
            .map_err(|e| crate::Error::Other(format!("TLS client: {e}")))
    }

    /// A listener that completes each TLS handshake (in its own task, so a slow or
    /// refused peer holds up no other) before handing the connection to axum.
    pub(crate) fn listener(&self, tcp: TcpListener) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(self.server.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accept on {local}: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let handed = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::warn!("TLS handshake with {peer} refused: {e}"),
                        Err(_) => tracing::warn!("TLS handshake with {peer}: no handshake in 10 s"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { rx, local })
    }
}

/// Connections whose TLS handshake succeeded (the peer's certificate checked).
pub(crate) struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
