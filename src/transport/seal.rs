//! Every frame after the handshake, sealed. With a cluster secret, both sides derive two
//! session keys from the secret and the handshake transcript (HKDF-SHA256; both nonces are
//! fresh, so the keys are this connection's alone), one per direction. Each frame is then
//! encrypted and authenticated with ChaCha20-Poly1305 under a nonce that is the frame's
//! sequence number in its direction. The sequence is never sent: a frame injected, replayed,
//! reordered, dropped or cut short fails to open, and the connection closes.
//!
//! The handshake proof alone covered the handshake: an on-path relay wrote an append into an
//! authenticated connection after it, and a follower applied it.

use hkdf::Hkdf;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::Sha256;

use super::auth::Transcript;
use crate::config::Secret;

/// Bytes a sealed frame carries beyond its plaintext (the Poly1305 tag).
pub const SEAL_OVERHEAD: usize = 16;

/// The two keys of one connection.
pub struct SessionKeys {
    /// Seals what the dialer sends (raft frames).
    pub dialer: Sealer,
    /// Seals what the listener sends (its Welcome and its refusals).
    pub listener: Sealer,
}

impl SessionKeys {
    /// Derives the connection's keys from the secret and the whole handshake transcript.
    pub fn derive(secret: &Secret, transcript: &Transcript<'_>) -> SessionKeys {
        let salt = [transcript.dialer_nonce, transcript.listener_nonce].concat();
        let hkdf = Hkdf::<Sha256>::new(Some(&salt), secret.bytes());
        let mut info = b"raftline frame keys v1".to_vec();
        transcript.encode_into(&mut info);
        let mut okm = [0u8; 64];
        hkdf.expand(&info, &mut okm)
            .expect("64 bytes is a valid HKDF-SHA256 output length");
        let (dialer, listener) = okm.split_at(32);
        SessionKeys {
            dialer: Sealer::new(dialer),
            listener: Sealer::new(listener),
        }
    }
}

/// One direction of a connection: seals (on the sending side) or opens (on the receiving
/// side) its frames in order, with ChaCha20-Poly1305 (RFC 8439). `ring`'s implementation
/// (already linked for TLS): the `chacha20poly1305` crate's took 2.2 us to seal a 100-byte
/// frame against ring's 0.3 us (its vectorised Poly1305 pays a setup per message), four times
/// on the path of every write; the bytes are the same (`the_wire_bytes_are_unchanged`).
pub struct Sealer {
    key: LessSafeKey,
    /// The sequence number of the next frame in this direction.
    next: u64,
}

impl Sealer {
    fn new(key: &[u8]) -> Sealer {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key");
        Sealer {
            key: LessSafeKey::new(key),
            next: 0,
        }
    }

    /// The nonce of the next frame: its sequence number, never reused under one key.
    fn nonce(&mut self) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.next.to_be_bytes());
        self.next += 1;
        Nonce::assume_unique_for_key(nonce)
    }

    /// Encrypts `frame` in place and appends its tag.
    pub fn seal(&mut self, mut frame: Vec<u8>) -> Vec<u8> {
        let nonce = self.nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut frame)
            .expect("frames are far below ChaCha20's length limit");
        frame.extend_from_slice(tag.as_ref());
        frame
    }

    /// The plaintext of the next frame, or why it is not the peer's next frame.
    pub fn open(&mut self, mut sealed: Vec<u8>) -> Result<Vec<u8>, String> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err("a sealed frame shorter than its tag".into());
        }
        let nonce = self.nonce();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| {
                "a frame failed authentication (forged, replayed, reordered or cut)".to_string()
            })?
            .len();
        sealed.truncate(plain);
        Ok(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::auth::nonce;

    fn keys(secret: &str, dialer_nonce: &[u8], listener_nonce: &[u8]) -> SessionKeys {
        let transcript = Transcript {
            cluster_id: "c",
            dialer: "n1",
            listener: "n2",
            dialer_nonce,
            listener_nonce,
            dialer_http_url: "",
        };
        SessionKeys::derive(&Secret::new(secret), &transcript)
    }

    #[test]
    fn frames_open_once_in_order_under_their_own_connection_keys() {
        let (a, b) = (nonce(), nonce());
        let (mut sender, mut receiver) = (keys("s", &a, &b), keys("s", &a, &b));
        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| sender.dialer.seal(vec![i; 40])).collect();
        assert_eq!(
            receiver.dialer.open(frames[0].clone()).unwrap(),
            vec![0; 40]
        );

        // Phase: replay, reorder, forgery and truncation all fail.
        assert!(receiver.dialer.open(frames[0].clone()).is_err(), "replayed");
        let mut receiver = keys("s", &a, &b);
        assert!(
            receiver.dialer.open(frames[1].clone()).is_err(),
            "reordered"
        );
        let mut receiver = keys("s", &a, &b);
        let mut forged = frames[0].clone();
        forged[3] ^= 1;
        assert!(receiver.dialer.open(forged).is_err(), "a flipped bit");
        let mut receiver = keys("s", &a, &b);
        let cut = frames[0][..frames[0].len() - 1].to_vec();
        assert!(receiver.dialer.open(cut).is_err(), "cut short");
        assert!(keys("s", &a, &b).dialer.open(vec![1; 5]).is_err(), "no tag");

        // Phase: keys belong to one secret, one connection and one direction.
        let frame = keys("s", &a, &b).dialer.seal(b"hello".to_vec());
        assert!(
            keys("t", &a, &b).dialer.open(frame.clone()).is_err(),
            "secret"
        );
        assert!(
            keys("s", &a, &nonce()).dialer.open(frame.clone()).is_err(),
            "nonce"
        );
        assert!(
            keys("s", &a, &b).listener.open(frame.clone()).is_err(),
            "direction"
        );
        assert_eq!(keys("s", &a, &b).dialer.open(frame).unwrap(), b"hello");
    }

    /// Frames sealed before the switch to `ring` (by the `chacha20poly1305` crate, the same
    /// key and sequence numbers): peers of either build understand each other.
    #[test]
    fn the_wire_bytes_are_unchanged() {
        let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut sender = Sealer::new(&[0x42; 32]);
        let first = sender.seal(b"raft frame 0".to_vec());
        let second = sender.seal(vec![7; 70]);
        assert_eq!(
            hex(&first),
            "2b07825f3dd241ac81c47404edd7a8d90f51668f76a064fa91a90990"
        );
        assert_eq!(
            hex(&second),
            "17396e3a4465d2722e6e8c80962b77cc13964473ee897c0f4c772e0b4b5b74e28965072774e5dd3e\
             727d0de52b423ca65f3f6167d355b889e4e7a39493b356bbd63377e14e7a0bc7551b8cfc9123e1c4\
             d2804e79680b"
        );
        let mut receiver = Sealer::new(&[0x42; 32]);
        assert_eq!(receiver.open(first).unwrap(), b"raft frame 0");
        assert_eq!(receiver.open(second).unwrap(), vec![7; 70]);
    }
}
