//! Any bytes as a WebSocket message of the peer protocol: decoding a frame, the raft
//! messages inside it, and checking a handshake must end in a value or an error. A raft
//! frame the listener's hand-written reader accepts is the frame rmp-serde reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftline::transport::wire::{check_hello, decode_raft_message, Frame, Received};

fuzz_target!(|data: &[u8]| {
    if let Ok(Received::Raft(messages)) = Frame::decode_received(data) {
        let Ok(Frame::Raft { messages: read }) = Frame::decode(data) else {
            panic!("the hand-written reader accepted what rmp-serde refuses");
        };
        assert!(messages.iter().map(|m| &m[..]).eq(read.iter().map(|m| &m[..])));
    }
    let Ok(frame) = Frame::decode(data) else {
        return;
    };
    match &frame {
        Frame::Raft { messages } => {
            for bytes in messages {
                let _ = decode_raft_message(bytes);
            }
        }
        Frame::Chunk { bytes, .. } => {
            let _ = decode_raft_message(bytes);
        }
        _ => {}
    }
    let _ = check_hello(frame, "raftline", "n1");
});
