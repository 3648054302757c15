//! TLS for the peer port (`wss://`), with rustls: both sides present a certificate and verify
//! the other's against the cluster's CA (mutual TLS). A certificate must also name the member
//! that presents it: the dialer checks that the listener's names the host of the URL it
//! dialled, and the listener that the dialer's names the host of the peer URL of the member
//! the dialer says it is, or that member's name (before, any member's certificate could speak
//! for any other).

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

    /// The listener's side: the peer must present a certificate the CA signed, which is
    /// returned for [`names_member`].
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(Box<dyn Io>, CertificateDer<'static>), String> {
        let stream = self
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or("TLS handshake without a client certificate")?
            .clone()
            .into_owned();
        Ok((Box::new(stream), cert))
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

/// True when `cert` names the member `name` as a subject alternative name: the host of its
/// peer URL (`url_host`, when this node knows it), or the name itself.
pub fn names_member(cert: &CertificateDer<'_>, name: &str, url_host: Option<&str>) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let url_host = url_host.map(|h| h.trim_start_matches('[').trim_end_matches(']'));
    [url_host, Some(name)].into_iter().flatten().any(|subject| {
        ServerName::try_from(subject)
            .is_ok_and(|subject| cert.verify_is_valid_for_subject_name(&subject).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> CertificateDer<'static> {
        let path = format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
        CertificateDer::from_pem_file(&path).unwrap()
    }

    #[test]
    fn a_certificate_names_the_member_by_its_url_host_or_its_name() {
        let member = fixture("member.pem"); // 127.0.0.1, localhost
        let elsewhere = fixture("elsewhere.pem"); // 10.0.0.9, elsewhere.svc
        assert!(names_member(&member, "n2", Some("127.0.0.1")));
        assert!(names_member(&member, "n2", Some("localhost")));
        assert!(!names_member(&elsewhere, "n2", Some("127.0.0.1")));
        assert!(!names_member(&elsewhere, "n2", None));
        assert!(names_member(&elsewhere, "elsewhere.svc", None), "by name");
        assert!(names_member(&elsewhere, "x", Some("10.0.0.9")));
        assert!(names_member(&elsewhere, "x", Some("[10.0.0.9]")));
        assert!(!names_member(&member, "bad_name", None));
    }
}
