//! The peer protocol on the wire: MessagePack frames inside binary WebSocket messages.
//!
//! A connection carries traffic one way, dialer -> listener. The dialer opens with
//! [`Frame::Hello`]; the listener checks it and answers [`Frame::Welcome`] or closes the socket
//! with the reason. With a shared secret, the listener first answers [`Frame::Challenge`]
//! (its nonce and its proof of the secret), the dialer checks that proof and answers
//! [`Frame::Proof`], and only then comes the Welcome. After that the dialer sends
//! [`Frame::Raft`] frames, each holding many prost-encoded raft messages.
//!
//! With a secret, the Welcome and every frame after it travel sealed under the connection's
//! session keys (`transport::seal`): the frame's MessagePack bytes, encrypted, then a 16-byte
//! tag. A listener that closes a proven dialer's connection first sends a sealed
//! [`Frame::Refused`] with the reason.

use prost::Message as _;
use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::config::valid_http_url;

/// The newest version of this protocol this release speaks. A dialer offers it in its Hello;
/// the listener answers, in its Welcome, the version both speak ([`negotiate`]), and both
/// speak that one on the connection. So a release talks to the one before it and the one
/// after it, and a cluster upgrades one member at a time.
pub const PROTOCOL_VERSION: u32 = 4;
/// The oldest version this release still speaks (a peer offering an older one is refused:
/// upgrade one release at a time).
pub const MIN_PROTOCOL_VERSION: u32 = 4;
/// Largest handshake field (names, cluster id, nonces, proofs) accepted.
pub const MAX_HANDSHAKE_FIELD: usize = 256;
// A member's HTTP URL travels in the handshake.
const _: () = assert!(crate::config::MAX_HTTP_URL_BYTES <= MAX_HANDSHAKE_FIELD);
/// Writers stay below the largest frame: see [`FRAME_TARGET_BYTES`] and
/// [`MAX_WHOLE_MESSAGE_BYTES`].
pub use crate::limits::MAX_FRAME_BYTES;
/// A writer packs small raft messages into one frame up to about this size (a follower
/// catching up receives many appends of up to 1 MiB each: they go in frames of this size, not
/// in one frame as large as its backlog).
pub const FRAME_TARGET_BYTES: usize = 4 << 20;
/// Room a frame needs beyond the raft messages it carries (the frame's own envelope).
pub const FRAME_OVERHEAD_BYTES: usize = 1 << 20;
/// Largest raft message that travels whole, alone in its frame. Every proposal and every
/// append fits (entries are at most `max_proposal_bytes`, at most half of
/// [`MAX_FRAME_BYTES`]), so only snapshots can be larger: they travel in [`Frame::Chunk`]s.
pub const MAX_WHOLE_MESSAGE_BYTES: usize = MAX_FRAME_BYTES - FRAME_OVERHEAD_BYTES;
/// Size of the pieces of a message larger than [`MAX_WHOLE_MESSAGE_BYTES`].
pub const CHUNK_BYTES: usize = FRAME_TARGET_BYTES;
pub use crate::limits::MAX_MESSAGE_BYTES;
/// Most raft messages in one frame: a listener refuses a frame with more, and a writer
/// never packs more.
pub const MAX_MESSAGES_PER_FRAME: usize = 4096;
/// What MessagePack adds to each message in a [`Frame::Raft`] (a `bin 32` header).
const PER_MESSAGE_OVERHEAD: usize = 5;

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
    /// Listener -> dialer, sealed, before it closes a connection whose dialer proved the
    /// secret: why. (A close frame is not authenticated: a dialer with a secret acts on
    /// this one only.)
    Refused { reason: String },
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

    /// Parses a frame as [`Frame::decode`] does, but leaves a raft frame's messages in
    /// `bytes` (a listener decodes each straight from there).
    pub fn decode_received(bytes: &[u8]) -> Result<Received<'_>, String> {
        match bytes.strip_prefix(raft_prefix()) {
            Some(rest) => parse_raft_messages(rest).map(Received::Raft),
            None => Frame::decode(bytes).map(Received::Other),
        }
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

/// A frame as a listener receives it.
#[derive(Debug)]
pub enum Received<'a> {
    /// A [`Frame::Raft`]: its prost-encoded messages, borrowed from the frame.
    Raft(Vec<&'a [u8]>),
    /// Any other frame.
    Other(Frame),
}

/// What MessagePack puts before the message array of a [`Frame::Raft`] (the variant and its
/// one field), as `rmp_serde` writes it: raft frames are written and read by hand after it,
/// without a copy of each message in a buffer of its own.
fn raft_prefix() -> &'static [u8] {
    static PREFIX: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut empty = Frame::Raft {
            messages: Vec::new(),
        }
        .encode();
        assert_eq!(
            empty.pop(),
            Some(0x90),
            "an empty array ends an empty raft frame"
        );
        empty
    })
}

/// Appends a MessagePack array header for `len` items.
fn put_array_len(out: &mut Vec<u8>, len: usize) {
    if len <= 15 {
        out.push(0x90 | len as u8);
    } else {
        put_wide_len(out, len, 0xdc, 0xdd);
    }
}

/// Appends a MessagePack bin header for `len` bytes.
fn put_bin_len(out: &mut Vec<u8>, len: usize) {
    match u8::try_from(len) {
        Ok(len) => out.extend_from_slice(&[0xc4, len]),
        Err(_) => put_wide_len(out, len, 0xc5, 0xc6),
    }
}

/// Appends `tag16` and a 16-bit length, or `tag32` and a 32-bit one (the wider headers of
/// MessagePack's arrays and bins).
fn put_wide_len(out: &mut Vec<u8>, len: usize, tag16: u8, tag32: u8) {
    match u16::try_from(len) {
        Ok(len) => {
            out.push(tag16);
            out.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => {
            out.push(tag32);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Takes the byte at the front of `bytes` (a MessagePack type tag).
fn take_tag(bytes: &mut &[u8]) -> Result<u8, String> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return Err("malformed frame: truncated".into());
    };
    *bytes = rest;
    Ok(tag)
}

/// Reads a big-endian length of `N` bytes at the front of `bytes`.
fn take_len<const N: usize>(bytes: &mut &[u8]) -> Result<usize, String> {
    let Some((head, rest)) = bytes.split_first_chunk::<N>() else {
        return Err("malformed frame: truncated".into());
    };
    *bytes = rest;
    let mut be = [0u8; 8];
    be[8 - N..].copy_from_slice(head);
    Ok(u64::from_be_bytes(be) as usize)
}

/// The messages of a raft frame after [`raft_prefix`]: an array of bins, nothing after.
fn parse_raft_messages(mut rest: &[u8]) -> Result<Vec<&[u8]>, String> {
    let count = match take_tag(&mut rest)? {
        tag @ 0x90..=0x9f => usize::from(tag & 0x0f),
        0xdc => take_len::<2>(&mut rest)?,
        0xdd => take_len::<4>(&mut rest)?,
        _ => return Err("malformed frame: raft messages must be an array".into()),
    };
    // Each message takes at least its two header bytes: a count beyond that is a lie, and
    // must not size an allocation.
    if count > rest.len() / 2 {
        return Err("malformed frame: more messages announced than it holds".into());
    }
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        let len = match take_tag(&mut rest)? {
            0xc4 => take_len::<1>(&mut rest)?,
            0xc5 => take_len::<2>(&mut rest)?,
            0xc6 => take_len::<4>(&mut rest)?,
            _ => return Err("malformed frame: a raft message must be binary".into()),
        };
        if len > rest.len() {
            return Err("malformed frame: truncated".into());
        }
        let (message, after) = rest.split_at(len);
        messages.push(message);
        rest = after;
    }
    if !rest.is_empty() {
        return Err("malformed frame: bytes after the raft messages".into());
    }
    Ok(messages)
}

/// The encoded frames that carry `batch` in order, made one at a time as they are taken
/// (a writer sends the first frame of a large batch before it encodes the next: encoding a
/// backlog of hundreds of megabytes first kept a follower waiting for a second): small
/// messages packed together, up to [`FRAME_TARGET_BYTES`] and [`MAX_MESSAGES_PER_FRAME`] a
/// frame; a message larger than the target alone in its frame; one larger than
/// [`MAX_WHOLE_MESSAGE_BYTES`] (a snapshot) cut into [`Frame::Chunk`]s. No frame exceeds
/// [`MAX_FRAME_BYTES`].
pub struct Frames<'a> {
    batch: &'a [Message],
    /// The next message of `batch` to pack.
    next: usize,
    /// Chunks of an oversized message not taken yet.
    chunks: std::collections::VecDeque<Vec<u8>>,
    /// Messages sent in chunks so far.
    pub chunked: u64,
}

impl<'a> Frames<'a> {
    pub fn new(batch: &'a [Message]) -> Frames<'a> {
        Frames {
            batch,
            next: 0,
            chunks: std::collections::VecDeque::new(),
            chunked: 0,
        }
    }
}

impl Frames<'_> {
    /// True once every frame of the batch was taken.
    pub fn is_done(&self) -> bool {
        self.chunks.is_empty() && self.next >= self.batch.len()
    }
}

impl Iterator for Frames<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Some(chunk);
        }
        let first = self.next;
        let mut sizes: Vec<usize> = Vec::new();
        let mut packed_bytes = 0;
        while let Some(message) = self.batch.get(self.next) {
            let size = message.encoded_len();
            if size > MAX_WHOLE_MESSAGE_BYTES {
                if !sizes.is_empty() {
                    break; // the packed messages first; the chunks on the next call
                }
                self.next += 1;
                self.chunked += 1;
                let bytes = message.encode_to_vec();
                let pieces = bytes.chunks(CHUNK_BYTES);
                let count = pieces.len();
                for (i, piece) in pieces.enumerate() {
                    let chunk = Frame::Chunk {
                        bytes: ByteBuf::from(piece.to_vec()),
                        last: i + 1 == count,
                    };
                    self.chunks.push_back(chunk.encode());
                }
                return self.chunks.pop_front();
            }
            let cost = size + PER_MESSAGE_OVERHEAD;
            let full =
                packed_bytes + cost > FRAME_TARGET_BYTES || sizes.len() == MAX_MESSAGES_PER_FRAME;
            if !sizes.is_empty() && full {
                break;
            }
            packed_bytes += cost;
            sizes.push(size);
            self.next += 1;
        }
        if sizes.is_empty() {
            return None;
        }
        // The bytes `Frame::Raft` encodes to, each message encoded in place.
        let prefix = raft_prefix();
        // Room for the seal's tag too: no reallocation to add it.
        let room = prefix.len() + 5 + packed_bytes + super::seal::SEAL_OVERHEAD;
        let mut frame = Vec::with_capacity(room);
        frame.extend_from_slice(prefix);
        put_array_len(&mut frame, sizes.len());
        for (message, size) in self.batch[first..self.next].iter().zip(sizes) {
            put_bin_len(&mut frame, size);
            message
                .encode(&mut frame)
                .expect("a Vec grows to take any message");
        }
        Some(frame)
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

/// The version a listener speaks with a dialer that offered `offered` (its newest): the
/// newest both speak. A dialer of a later release offers a version above this one's and gets
/// this one's newest, which it still speaks; one older than [`MIN_PROTOCOL_VERSION`] is
/// refused.
pub fn negotiate(offered: u32) -> Result<u32, String> {
    if offered < MIN_PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {offered} is older than this node speaks \
             ({MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}): upgrade one release at a time"
        ));
    }
    Ok(offered.min(PROTOCOL_VERSION))
}

/// Checks the version a listener chose in its Welcome (the dialer offered
/// [`PROTOCOL_VERSION`]).
pub fn check_welcome(version: u32) -> Result<u32, String> {
    if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        Ok(version)
    } else {
        Err(format!(
            "the peer chose protocol version {version}; this node speaks \
             {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
        ))
    }
}

/// A dialer's Hello that passed [`check_hello`].
#[derive(Debug)]
pub struct Hello {
    /// The protocol version the connection speaks ([`negotiate`]).
    pub version: u32,
    /// The name the dialer claims (proven later if the cluster has a secret).
    pub from: String,
    pub nonce: ByteBuf,
    /// Its application's HTTP URL, checked by [`crate::config::valid_http_url`]; empty if none.
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
    let version = negotiate(version)?;
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
        version,
        from,
        nonce,
        http_url,
    })
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

    fn append_of(bytes: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.entries = vec![raft::eraftpb::Entry {
            data: vec![7; bytes],
            ..Default::default()
        }];
        m
    }

    /// Every frame a writer produces is one a listener accepts, whatever the batch: the
    /// writer once packed a whole backlog (121 MB of appends) or 10,001 parked proposals into
    /// one frame, which the listener refused again and again.
    #[test]
    fn frames_stay_within_what_a_listener_accepts() {
        let cases: Vec<(&str, Vec<Message>)> = vec![
            (
                "a backlog of 1 MiB appends",
                (0..130).map(|_| append_of(1 << 20)).collect(),
            ),
            (
                "10,001 small messages",
                (0..10_001).map(|_| append_of(10)).collect(),
            ),
            (
                "a proposal of the largest size",
                vec![append_of(MAX_FRAME_BYTES / 2)],
            ),
            (
                "small, large, small",
                vec![append_of(10), append_of(MAX_FRAME_BYTES / 2), append_of(10)],
            ),
            (
                "one message past the whole limit",
                vec![append_of(MAX_WHOLE_MESSAGE_BYTES)],
            ),
        ];
        for (case, batch) in cases {
            let mut frames = Frames::new(&batch);
            let all: Vec<Vec<u8>> = frames.by_ref().collect();
            let chunked = frames.chunked as usize;
            let frames = all;
            let mut decoded = Vec::new();
            let mut partial = Vec::new();
            for frame in &frames {
                assert!(
                    frame.len() <= MAX_FRAME_BYTES,
                    "{case}: a frame of {} bytes",
                    frame.len()
                );
                match Frame::decode(frame).unwrap() {
                    Frame::Raft { messages } => {
                        assert!(messages.len() <= MAX_MESSAGES_PER_FRAME, "{case}");
                        for m in messages {
                            decoded.push(decode_raft_message(&m).unwrap());
                        }
                    }
                    Frame::Chunk { bytes, last } => {
                        partial.extend_from_slice(&bytes);
                        if last {
                            decoded
                                .push(decode_raft_message(&std::mem::take(&mut partial)).unwrap());
                        }
                    }
                    other => panic!("{case}: {other:?}"),
                }
            }
            assert_eq!(
                decoded, batch,
                "{case}: the messages arrive whole and in order"
            );
            let expect_chunked = batch
                .iter()
                .filter(|m| m.encoded_len() > MAX_WHOLE_MESSAGE_BYTES)
                .count();
            assert_eq!(
                chunked, expect_chunked,
                "{case}: only oversized messages are chunked"
            );
        }
    }

    /// Raft frames are written and read by hand: the bytes are those of the MessagePack
    /// encoding of `Frame::Raft`, whatever the number and sizes of the messages.
    #[test]
    fn raft_frames_written_by_hand_are_the_encoded_frame() {
        for (count, bytes) in [
            (1, 0),
            (3, 10),
            (15, 200),
            (16, 300),
            (40, 70_000),
            (70_000, 1),
        ] {
            let batch: Vec<Message> = (0..count).map(|_| append_of(bytes)).collect();
            let frames: Vec<Vec<u8>> = Frames::new(&batch).collect();
            let mut taken = 0;
            for frame in &frames {
                let Frame::Raft { messages } = Frame::decode(frame).unwrap() else {
                    panic!("a raft frame")
                };
                let expected = Frame::raft(&batch[taken..taken + messages.len()]).encode();
                assert_eq!(frame, &expected, "{count} messages of {bytes} bytes");
                let Received::Raft(received) = Frame::decode_received(frame).unwrap() else {
                    panic!("received as a raft frame")
                };
                assert_eq!(received.len(), messages.len());
                for (r, m) in received.iter().zip(&messages) {
                    assert_eq!(*r, m.as_slice());
                }
                taken += messages.len();
            }
            assert_eq!(taken, count);
        }
        // Other frames are read as before.
        let welcome = Frame::Welcome { version: 4 };
        match Frame::decode_received(&welcome.encode()).unwrap() {
            Received::Other(frame) => assert_eq!(frame, welcome),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_raft_frame_that_lies_about_its_contents_is_an_error() {
        let frame = Frames::new(&[append_of(10), append_of(10)]).next().unwrap();
        let prefix = raft_prefix().len();
        let mut cases: Vec<Vec<u8>> = (prefix..frame.len()).map(|n| frame[..n].to_vec()).collect();
        let mut trailing = frame.clone();
        trailing.push(0);
        cases.push(trailing);
        // An announced count of four billion messages in a few bytes.
        let mut huge = raft_prefix().to_vec();
        huge.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc4, 0x00]);
        cases.push(huge);
        // A message that is not binary.
        let mut text = raft_prefix().to_vec();
        text.extend_from_slice(&[0x91, 0xa1, b'x']);
        cases.push(text);
        for bytes in cases {
            assert!(Frame::decode_received(&bytes).is_err(), "{bytes:?}");
        }
    }

    /// Frames mangled at random: the hand-written reader never panics, and a raft frame it
    /// accepts is the frame rmp-serde reads (the fuzz target `wire` does the same at length).
    #[test]
    fn a_mangled_raft_frame_is_read_as_rmp_serde_reads_it_or_refused() {
        let batch: Vec<Message> = (0..5).map(|i| append_of(10 + 300 * i)).collect();
        let frame = Frames::new(&batch).next().unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut bytes = frame.clone();
            for _ in 0..1 + random() % 3 {
                let at = (random() % bytes.len() as u64) as usize;
                bytes[at] = random() as u8;
            }
            bytes.truncate(bytes.len() - (random() % 4) as usize);
            if let Ok(Received::Raft(messages)) = Frame::decode_received(&bytes) {
                accepted += 1;
                let Ok(Frame::Raft { messages: read }) = Frame::decode(&bytes) else {
                    panic!("accepted what rmp-serde refuses: {bytes:?}");
                };
                assert!(messages
                    .iter()
                    .copied()
                    .eq(read.iter().map(|m| m.as_slice())));
            }
        }
        assert!(
            accepted > 0,
            "some mangled frames still read (a flipped byte in a message)"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\x81\xa4Raft", b"\xff\xff\xff", b"\x92\x01"] {
            assert!(Frame::decode(bytes).is_err(), "{bytes:?}");
        }
        assert!(decode_raft_message(b"\xff\xff\xff\xff").is_err());
    }
}
