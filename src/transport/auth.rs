//! Mutual proof of the cluster's shared secret during the handshake. Each side sends a fresh
//! random nonce; each proves the secret with an HMAC-SHA256 over its role, the cluster id,
//! both names and both nonces, so a proof is good for this one connection only and the
//! secret itself never crosses the wire. Proofs are compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Bytes of a handshake nonce.
pub use crate::transport::wire::NONCE_BYTES;

/// Which side of the handshake proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Dialer,
    Listener,
}

/// What a proof covers: the connection's handshake.
pub struct Transcript<'a> {
    pub cluster_id: &'a str,
    pub dialer: &'a str,
    pub listener: &'a str,
    pub dialer_nonce: &'a [u8],
    pub listener_nonce: &'a [u8],
    /// The HTTP URL the dialer advertises: a man in the middle cannot swap it.
    pub dialer_http_url: &'a str,
}

impl Transcript<'_> {
    /// The transcript's fields, each length-prefixed so that no two transcripts share an
    /// encoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for field in [
            self.cluster_id.as_bytes(),
            self.dialer.as_bytes(),
            self.listener.as_bytes(),
            self.dialer_nonce,
            self.listener_nonce,
            self.dialer_http_url.as_bytes(),
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
    }

    fn mac(&self, secret: &Secret, side: Side) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.bytes()).expect("HMAC takes keys of any size");
        let role: &[u8] = match side {
            Side::Dialer => b"raftline dialer",
            Side::Listener => b"raftline listener",
        };
        let mut encoded = Vec::with_capacity(256);
        encoded.extend_from_slice(&(role.len() as u64).to_be_bytes());
        encoded.extend_from_slice(role);
        self.encode_into(&mut encoded);
        mac.update(&encoded);
        mac
    }

    /// The proof that `side` knows `secret`.
    pub fn prove(&self, secret: &Secret, side: Side) -> Vec<u8> {
        self.mac(secret, side).finalize().into_bytes().to_vec()
    }

    /// Checks `side`'s proof in constant time.
    pub fn verify(&self, secret: &Secret, side: Side, proof: &[u8]) -> bool {
        self.mac(secret, side).verify_slice(proof).is_ok()
    }
}

/// A fresh random nonce.
pub fn nonce() -> Vec<u8> {
    rand::random::<[u8; NONCE_BYTES]>().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_secret_side_and_transcript() {
        let secret = Secret::new("s3cret");
        let (a, b) = (nonce(), nonce());
        let t = Transcript {
            cluster_id: "c",
            dialer: "n1",
            listener: "n2",
            dialer_nonce: &a,
            listener_nonce: &b,
            dialer_http_url: "http://n1:8080",
        };
        let proof = t.prove(&secret, Side::Dialer);
        assert!(t.verify(&secret, Side::Dialer, &proof));
        assert!(!t.verify(&secret, Side::Listener, &proof), "a side's proof");
        assert!(
            !t.verify(&Secret::new("other"), Side::Dialer, &proof),
            "another secret"
        );
        let replay = Transcript {
            listener_nonce: &a,
            ..t
        };
        assert!(
            !replay.verify(&secret, Side::Dialer, &proof),
            "another nonce"
        );
        let swapped = Transcript {
            dialer_http_url: "http://evil:80",
            ..t
        };
        assert!(
            !swapped.verify(&secret, Side::Dialer, &proof),
            "another advertised url"
        );
        assert!(
            !t.verify(&secret, Side::Dialer, &proof[..16]),
            "a cut proof"
        );
    }
}
