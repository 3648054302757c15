//! A connection's write half, lent to the driver while its writer task is idle.
//!
//! Each peer has a writer task, so that a slow peer never stalls the driver. On the path of
//! every write, though, a message went driver -> queue -> writer task -> socket, and the hop
//! through the task (a wake-up, a poll of its `select!`, the queue's bookkeeping) cost about
//! as much as the socket write itself. So while the writer task waits with nothing queued,
//! it lends the connection's write half to this slot, and the driver writes a batch that
//! fits in one frame itself, without waiting: if the socket would block, or the batch is
//! larger, it goes through the queue as before.
//!
//! Order is kept by the slot's lock: the writer task lends the write half only once it
//! found its queues empty under the lock, and the driver queues a batch under the same lock,
//! taking the loan back at once, so that no later batch written directly overtakes it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt};
use raft::eraftpb::Message;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::seal::Sealer;
use super::Shared;
use crate::sync::Recover;

pub(super) type PeerSocket = tokio_tungstenite::WebSocketStream<Box<dyn super::Io>>;

/// The sending half of a connection: frames go out sealed when the cluster has a secret.
pub(super) struct Writer {
    pub sink: SplitSink<PeerSocket, WsMessage>,
    pub seal: Option<Sealer>,
}

impl Writer {
    /// Writes one frame of `batch`; on failure the whole batch is reported dropped.
    pub async fn write(
        &mut self,
        frame: Vec<u8>,
        shared: &Shared,
        batch: &[Message],
    ) -> Result<(), String> {
        let frame = self.sealed(frame);
        let len = frame.len() as u64;
        if let Err(e) = self.sink.send(WsMessage::Binary(frame.into())).await {
            let to = batch.first().map_or(0, |m| m.to);
            super::report_dropped(&shared.reports, to, batch);
            return Err(e.to_string());
        }
        shared.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    fn sealed(&mut self, frame: Vec<u8>) -> Vec<u8> {
        match &mut self.seal {
            Some(seal) => seal.seal(frame),
            None => frame,
        }
    }

    /// Writes `frame` without waiting. `Refused`: the sink could not take it now (nothing
    /// was written, nor sealed); `Sent` but not `flushed`: taken, but the socket would block
    /// before all of it left (the writer task must flush).
    fn write_now(&mut self, frame: Vec<u8>) -> WriteNow {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self.sink).poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return WriteNow::Failed(e.to_string()),
            Poll::Pending => return WriteNow::Refused,
        }
        let frame = self.sealed(frame);
        let len = frame.len() as u64;
        if let Err(e) = Pin::new(&mut self.sink).start_send(WsMessage::Binary(frame.into())) {
            return WriteNow::Failed(e.to_string());
        }
        match Pin::new(&mut self.sink).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => WriteNow::Sent { len, flushed: true },
            Poll::Ready(Err(e)) => WriteNow::Failed(e.to_string()),
            Poll::Pending => WriteNow::Sent {
                len,
                flushed: false,
            },
        }
    }
}

enum WriteNow {
    Sent { len: u64, flushed: bool },
    Refused,
    Failed(String),
}

/// Where a peer's writer task lends its connection's write half (see the module docs).
#[derive(Default)]
pub(super) struct DirectSlot {
    lent: Mutex<Lent>,
    /// Wakes the writer task: a direct write left bytes to flush, or failed.
    wake: Notify,
}

#[derive(Default)]
struct Lent {
    writer: Option<Writer>,
    /// The writer task waits with its queues empty: the driver may write through `writer`.
    open: bool,
    /// A direct write left bytes in the sink: flush before anything else.
    unflushed: bool,
    /// A direct write failed: the connection is broken.
    failed: Option<String>,
    /// The driver wrote since the writer task lent the write half (the connection is busy,
    /// not idle: no keep-alive ping is needed).
    wrote: bool,
}

/// What the writer task finds when it takes its write half back.
pub(super) struct Returned {
    pub writer: Writer,
    /// Bytes a direct write left in the sink: flush them first.
    pub unflushed: bool,
    /// The driver wrote meanwhile.
    pub wrote: bool,
}

impl DirectSlot {
    /// Sends `batch` now if the writer task lent its write half and the batch fits in one
    /// frame, or else queues it with `queue` (which returns what did not fit). Returns what
    /// was dropped; counts what it wrote in `bytes_sent`. Called by the driver.
    pub(super) fn send(
        &self,
        batch: Vec<Message>,
        bytes_sent: &AtomicU64,
        queue: impl FnOnce(Vec<Message>) -> Vec<Message>,
    ) -> Vec<Message> {
        let mut lent = self.lent.lock().recover();
        if !lent.open {
            return queue(batch);
        }
        let frame = one_frame(&batch);
        let (Some(frame), Some(writer)) = (frame, lent.writer.as_mut()) else {
            // Queued: the writer task takes its write half back before a later batch could
            // be written directly ahead of this one.
            lent.open = false;
            return queue(batch);
        };
        match writer.write_now(frame) {
            WriteNow::Sent { len, flushed } => {
                bytes_sent.fetch_add(len, Ordering::Relaxed);
                lent.wrote = true;
                if !flushed {
                    lent.unflushed = true;
                    lent.open = false;
                    self.wake.notify_one();
                }
                Vec::new()
            }
            WriteNow::Refused => {
                lent.open = false;
                queue(batch)
            }
            WriteNow::Failed(reason) => {
                lent.open = false;
                lent.failed = Some(reason);
                self.wake.notify_one();
                batch
            }
        }
    }

    /// Lends `writer` unless a batch waits: `take_waiting` looks (under the slot's lock, so
    /// that the driver cannot queue one unseen). Returns the batch that waits, with the
    /// writer, or lends it.
    // The writer goes back to its task by value: boxing it would cost an allocation for
    // every batch taken from the queues under load.
    #[allow(clippy::result_large_err)]
    pub(super) fn lend(
        &self,
        writer: Writer,
        take_waiting: impl FnOnce() -> Option<Vec<Message>>,
    ) -> Result<(), (Writer, Vec<Message>)> {
        let mut lent = self.lent.lock().recover();
        if let Some(batch) = take_waiting() {
            return Err((writer, batch));
        }
        *lent = Lent {
            writer: Some(writer),
            open: true,
            ..Lent::default()
        };
        Ok(())
    }

    /// Takes the write half back (the driver writes no more until the next loan). Fails with
    /// why a direct write found the connection broken.
    pub(super) fn take_back(&self) -> Result<Returned, String> {
        let mut lent = std::mem::take(&mut *self.lent.lock().recover());
        if let Some(reason) = lent.failed.take() {
            return Err(reason);
        }
        let writer = lent.writer.ok_or("the write half was not lent")?;
        Ok(Returned {
            writer,
            unflushed: lent.unflushed,
            wrote: lent.wrote,
        })
    }

    /// Drops a write half still lent when the guard goes: the connection ended (returned,
    /// failed or its task aborted).
    pub(super) fn ends_with_connection(&self) -> LoanEnds<'_> {
        LoanEnds(self)
    }

    /// Completes when a direct write needs the writer task.
    pub(super) async fn woken(&self) {
        self.wake.notified().await
    }
}

/// See [`DirectSlot::ends_with_connection`].
pub(super) struct LoanEnds<'a>(&'a DirectSlot);

impl Drop for LoanEnds<'_> {
    fn drop(&mut self) {
        *self.0.lent.lock().recover() = Lent::default();
    }
}

/// The frame of `batch` when it fits in one and carries no snapshot (whose delivery is
/// reported once written).
fn one_frame(batch: &[Message]) -> Option<Vec<u8>> {
    if batch.iter().any(super::is_snapshot) {
        return None;
    }
    let mut frames = super::wire::Frames::new(batch);
    let frame = frames.next()?;
    (frames.is_done() && frames.chunked == 0).then_some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use raft::eraftpb::MessageType;

    /// A connected WebSocket pair on loopback: the dialer's writer, and the listener's side.
    async fn pair() -> (
        Writer,
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_tungstenite::accept_async(tcp).await.unwrap()
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let io: Box<dyn super::super::Io> = Box::new(tcp);
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), io)
            .await
            .unwrap();
        let (sink, _stream) = ws.split();
        // The read half is dropped: the writer only writes.
        (Writer { sink, seal: None }, accept.await.unwrap())
    }

    fn message(kind: MessageType, commit: u64) -> Message {
        Message {
            msg_type: kind as i32,
            to: 2,
            from: 1,
            commit,
            ..Message::default()
        }
    }

    /// The commit indexes of the heartbeats in the next frame the listener reads.
    async fn next_frame(
        server: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> Vec<u64> {
        let frame = server.next().await.unwrap().unwrap().into_data();
        match super::super::wire::Frame::decode_received(&frame).unwrap() {
            super::super::wire::Received::Raft(messages) => messages
                .iter()
                .map(|m| super::super::wire::decode_raft_message(m).unwrap().commit)
                .collect(),
            other => panic!("not a raft frame: {other:?}"),
        }
    }

    /// The order the transport promises: a batch that goes through the queue keeps every
    /// later batch behind it until the writer task, having sent the queue, lends its write
    /// half again.
    #[tokio::test]
    async fn a_queued_batch_keeps_later_ones_behind_it_until_the_writer_lends_again() {
        // Phase 1: the writer lends its write half; a small batch is written at once.
        let (writer, mut server) = pair().await;
        let (slot, sent) = (DirectSlot::default(), AtomicU64::new(0));
        assert!(slot.lend(writer, || None).is_ok());
        let mut queued: Vec<Vec<Message>> = Vec::new();
        let mut queue = |batch| {
            queued.push(batch);
            Vec::new()
        };
        let heartbeat = |commit| vec![message(MessageType::MsgHeartbeat, commit)];
        assert!(slot.send(heartbeat(1), &sent, &mut queue).is_empty());
        assert_eq!(next_frame(&mut server).await, [1]);
        assert!(sent.load(Ordering::Relaxed) > 0);

        // Phase 2: a batch that cannot go at once (a snapshot, reported when written) is
        // queued, and the small batch after it is queued behind it, not written.
        let snapshot = vec![message(MessageType::MsgSnapshot, 2)];
        assert!(slot.send(snapshot, &sent, &mut queue).is_empty());
        assert!(slot.send(heartbeat(3), &sent, &mut queue).is_empty());
        let commits: Vec<u64> = queued.iter().map(|b| b[0].commit).collect();
        assert_eq!(commits, [2, 3]);

        // Phase 3: the writer takes its half back (the driver wrote meanwhile), and may lend
        // it again only once nothing waits.
        let back = slot.take_back().unwrap();
        assert!(back.wrote && !back.unflushed);
        let mut waiting = queued.split_off(0);
        let (writer, first) = slot
            .lend(back.writer, || {
                (!waiting.is_empty()).then(|| waiting.remove(0))
            })
            .unwrap_err();
        assert_eq!(first[0].commit, 2);
        waiting.clear();
        assert!(slot.lend(writer, || None).is_ok());
        assert!(slot.send(heartbeat(4), &sent, |b| b).is_empty());
        assert_eq!(next_frame(&mut server).await, [4]);

        // Phase 4: once the connection ends, nothing is written directly.
        drop(slot.ends_with_connection());
        let unsent = slot.send(heartbeat(5), &sent, |b| b);
        assert_eq!(unsent[0].commit, 5, "handed to the queue");
    }
}
