//! The peer protocol on the wire: MessagePack frames inside binary WebSocket messages.
//!
//! A connection carries traffic one way, dialer -> listener. The dialer opens with
//! [`Frame::Hello`]; the listener checks it and answers [`Frame::Welcome`] or closes the socket
//! with the reason. With a shared secret, the listener first answers [`Frame::Challenge`]
//! (its nonce and its proof of the secret), the dialer checks that proof and answers
//! [`Frame::Proof`], and only then comes the Welcome. After that the dialer sends
//! [`Frame::Raft`] frames, each holding many prost-encoded raft messages.

use prost::Message as _;
use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Version of this protocol; peers must speak the same one.
pub const PROTOCOL_VERSION: u32 = 3;
/// Largest handshake field (names, cluster id, nonces, proofs) accepted.
pub const MAX_HANDSHAKE_FIELD: usize = 256;
/// Largest WebSocket message accepted; larger ones close the connection before decoding.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Raft messages larger than this travel as [`Frame::Chunk`]s of this size.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Largest raft message (a snapshot) accepted in chunks.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Most raft messages packed into one frame.
pub const MAX_MESSAGES_PER_FRAME: usize = 4096;

/// One WebSocket message of the peer protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Dialer -> listener, first frame: who is calling whom, in which cluster.
    Hello {
        version: u32,
        cluster_id: String,
        from: String,
        to: String,
        /// The dialer's fresh random nonce.
        nonce: ByteBuf,
        /// Where the dialer's application serves HTTP (`""`: not advertised), for clients
        /// that a follower sends to the leader.
        http_url: String,
    },
    /// Listener -> dialer, with a secret: the listener's nonce and its proof of the secret.
    Challenge { nonce: ByteBuf, proof: ByteBuf },
    /// Dialer -> listener: the dialer's proof of the secret.
    Proof { proof: ByteBuf },
    /// Listener -> dialer: the handshake passed.
    Welcome { version: u32 },
    /// Dialer -> listener: raft messages, each prost-encoded.
    Raft { messages: Vec<ByteBuf> },
    /// Dialer -> listener: a piece of one large raft message (a snapshot); the pieces of a
    /// message follow each other on the connection, `last` marks the final one.
    Chunk { bytes: ByteBuf, last: bool },
}

impl Frame {
    /// MessagePack bytes of the frame.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("frames always encode")
    }

    /// Parses a frame, whose size the caller has already bounded.
    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| format!("malformed frame: {}", printable(&e.to_string())))
    }

    /// A raft frame holding `messages`.
    pub fn raft(messages: &[Message]) -> Frame {
        Frame::Raft {
            messages: messages
                .iter()
                .map(|m| ByteBuf::from(m.encode_to_vec()))
                .collect(),
        }
    }
}

/// A decoder's message made safe to log: hostile bytes echoed in it are escaped and cut.
fn printable(text: &str) -> String {
    text.chars()
        .take(120)
        .flat_map(char::escape_default)
        .collect()
}

/// Length of the nonces in the handshake.
pub const NONCE_BYTES: usize = 32;

/// A dialer's Hello that passed [`check_hello`].
#[derive(Debug)]
pub struct Hello {
    /// The name the dialer claims (proven later if the cluster has a secret).
    pub from: String,
    pub nonce: ByteBuf,
    /// Its application's HTTP URL, checked by [`valid_http_url`]; empty if none.
    pub http_url: String,
}

/// Checks the dialer's first frame at the listener `me` of cluster `cluster_id`. The
/// reasons never name this node: the dialer is not authenticated yet.
pub fn check_hello(frame: Frame, cluster_id: &str, me: &str) -> Result<Hello, String> {
    let Frame::Hello {
        version,
        cluster_id: theirs,
        from,
        to,
        nonce,
        http_url,
    } = frame
    else {
        return Err("the first frame must be a handshake".into());
    };
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {version} is not {PROTOCOL_VERSION}"
        ));
    }
    if [theirs.len(), from.len(), to.len(), http_url.len()]
        .iter()
        .any(|&len| len > MAX_HANDSHAKE_FIELD)
    {
        return Err("oversized handshake field".into());
    }
    if theirs != cluster_id {
        return Err(format!("wrong cluster id \"{}\"", printable(&theirs)));
    }
    if to != me {
        return Err("wrong receiver".into());
    }
    crate::ids::validate_name(&from).map_err(|e| format!("invalid sender name: {e}"))?;
    if from == me {
        return Err("a node cannot dial itself".into());
    }
    if nonce.len() != NONCE_BYTES {
        return Err("invalid handshake nonce".into());
    }
    if !http_url.is_empty() && !valid_http_url(&http_url) {
        return Err("invalid http url".into());
    }
    Ok(Hello {
        from,
        nonce,
        http_url,
    })
}

/// An `http://` or `https://` URL of printable ASCII without spaces, at most
/// [`MAX_HANDSHAKE_FIELD`] bytes: safe to hand to clients in a `Location` header.
pub fn valid_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    url.len() <= MAX_HANDSHAKE_FIELD
        && rest.is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic()))
}

/// Decodes one prost-encoded raft message.
pub fn decode_raft_message(bytes: &[u8]) -> Result<Message, String> {
    Message::decode(bytes).map_err(|e| format!("malformed raft message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    #[test]
    fn a_hello_advertises_only_a_plain_http_url() {
        let hello = |http_url: &str| Frame::Hello {
            version: PROTOCOL_VERSION,
            cluster_id: "c".into(),
            from: "a".into(),
            to: "b".into(),
            nonce: ByteBuf::from(vec![7; NONCE_BYTES]),
            http_url: http_url.into(),
        };
        for good in ["", "http://a:8080", "https://a.example/api"] {
            let checked = check_hello(hello(good), "c", "b").expect(good);
            assert_eq!(checked.http_url, good);
        }
        let long = format!("http://{}", "a".repeat(MAX_HANDSHAKE_FIELD));
        for bad in [
            "ftp://a",
            "http://",
            "http://a b",
            "http://a\r\nX-Evil: 1",
            "javascript:x",
            &long,
        ] {
            assert!(check_hello(hello(bad), "c", "b").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames_round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.to = 2;
        m.from = 1;
        m.term = 7;
        let frames = [
            Frame::Hello {
                version: 1,
                cluster_id: "c".into(),
                from: "a".into(),
                to: "b".into(),
                nonce: ByteBuf::from(vec![7; 32]),
                http_url: "http://a:8080".into(),
            },
            Frame::Challenge {
                nonce: ByteBuf::from(vec![1; 32]),
                proof: ByteBuf::from(vec![2; 32]),
            },
            Frame::Proof {
                proof: ByteBuf::from(vec![3; 32]),
            },
            Frame::Welcome { version: 1 },
            Frame::raft(&[m.clone(), m.clone()]),
        ];
        for f in frames {
            assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        }
        let Frame::Raft { messages } = Frame::raft(std::slice::from_ref(&m)) else {
            unreachable!()
        };
        assert_eq!(decode_raft_message(&messages[0]).unwrap(), m);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\x81\xa4Raft", b"\xff\xff\xff", b"\x92\x01"] {
            assert!(Frame::decode(bytes).is_err(), "{bytes:?}");
        }
        assert!(decode_raft_message(b"\xff\xff\xff\xff").is_err());
    }
}
