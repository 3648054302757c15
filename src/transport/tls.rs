//! TLS for the peer port (`wss://`), with rustls: both sides present a certificate and verify
//! the other's against the cluster's CA (mutual TLS); the dialer also checks that the
//! listener's certificate names the host of the URL it dialled.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::Io;
use crate::config::TlsFiles;

/// Both sides of TLS for one node, built once at start.
pub(super) struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl Tls {
    /// Parses the PEM material and builds both sides; the error says what is wrong with it.
    pub fn new(files: &TlsFiles) -> Result<Tls, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls.cert is not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("tls.cert holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(files.key.bytes())
            .map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
        // Without a CA, members share one self-signed certificate, which is then the root.
        let ca = files.ca.as_deref().unwrap_or(&files.cert);
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| format!("tls.ca is not PEM certificates: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls.ca holds an unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("tls.ca holds no certificate".into());
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("cannot verify peers against tls.ca: {e}"))?;
        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("tls.cert and tls.key do not go together: {e}"))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("tls.cert and tls.key do not go together: {e}"))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The listener's side: the peer must present a certificate the CA signed.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Box<dyn Io>, String> {
        let stream = self
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok(Box::new(stream))
    }

    /// The dialer's side: the listener's certificate must be the CA's and name `host`.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<Box<dyn Io>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("cannot verify host {host:?}: {e}"))?;
        let stream = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok(Box::new(stream))
    }
}
