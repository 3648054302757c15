//! Identity of a node's requests (proposals, conf changes, ReadIndex rounds) and the
//! deadlines of the callers waiting on them.
//!
//! A request travels in the entry's (or ReadIndex message's) context as
//! `raft id | incarnation | sequence`. The incarnation is drawn at random each time a node
//! starts, so that entries proposed in an earlier life, which a restarted node applies again
//! while it replays its log, can never be mistaken for the requests of this life. A write
//! forwarded to the leader carries its caller's deadline after that
//! (`peer_messages::with_deadline`), so that the transport never sends it late.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Where a request's answer goes: to one caller awaiting it, or to a callback (the binding
/// gathers the answers of many requests and settles them in one call into JS).
pub enum Reply<T> {
    Once(tokio::sync::oneshot::Sender<Result<T>>),
    Call(Callback<T>),
}

impl<T> Reply<T> {
    /// Answers, unless the caller has gone.
    pub fn send(self, answer: Result<T>) {
        match self {
            Reply::Once(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Call(callback) => callback.call(answer),
        }
    }

    /// True when nobody waits for the answer any more (a callback always waits).
    pub fn is_closed(&self) -> bool {
        match self {
            Reply::Once(tx) => tx.is_closed(),
            Reply::Call(_) => false,
        }
    }
}

impl<T> From<tokio::sync::oneshot::Sender<Result<T>>> for Reply<T> {
    fn from(tx: tokio::sync::oneshot::Sender<Result<T>>) -> Self {
        Reply::Once(tx)
    }
}

/// A callback that gets exactly one answer: a request dropped unanswered (still queued for
/// a driver that stopped) answers `Stopped`, as a dropped oneshot tells its receiver.
pub struct Callback<T>(Option<Box<dyn FnOnce(Result<T>) + Send>>);

impl<T> Callback<T> {
    pub fn new(f: impl FnOnce(Result<T>) + Send + 'static) -> Self {
        Callback(Some(Box::new(f)))
    }

    fn call(mut self, answer: Result<T>) {
        if let Some(f) = self.0.take() {
            f(answer);
        }
    }
}

impl<T> Drop for Callback<T> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(Error::Stopped));
        }
    }
}

/// Bytes of a request context (a forwarded write's has a deadline after them).
const CONTEXT_BYTES: usize = crate::peer_messages::REQUEST_ID_BYTES;

/// Makes and recognises this node's request contexts.
pub(crate) struct RequestIds {
    origin: u64,
    incarnation: u64,
    next: u64,
}

impl RequestIds {
    /// Ids for the node `origin` in a new life.
    pub fn new(origin: u64) -> Self {
        RequestIds {
            origin,
            incarnation: rand::random(),
            next: 1,
        }
    }

    /// A new sequence number and the context that carries it.
    pub fn next(&mut self) -> (u64, Vec<u8>) {
        let seq = self.next;
        self.next += 1;
        (seq, self.context(seq))
    }

    /// The context of request `seq`.
    pub fn context(&self, seq: u64) -> Vec<u8> {
        let mut ctx = Vec::with_capacity(CONTEXT_BYTES);
        ctx.extend_from_slice(&self.origin.to_be_bytes());
        ctx.extend_from_slice(&self.incarnation.to_be_bytes());
        ctx.extend_from_slice(&seq.to_be_bytes());
        ctx
    }

    /// The sequence number of `ctx` if it is a request of this node in this life.
    pub fn ours(&self, ctx: &[u8]) -> Option<u64> {
        let with_deadline = CONTEXT_BYTES + crate::peer_messages::DEADLINE_BYTES;
        if ctx.len() != CONTEXT_BYTES && ctx.len() != with_deadline {
            return None;
        }
        let word = |i: usize| u64::from_be_bytes(ctx[i * 8..i * 8 + 8].try_into().unwrap());
        (word(0) == self.origin && word(1) == self.incarnation).then(|| word(2))
    }
}

/// When a caller stops waiting: its deadline and how long it asked to wait.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub timeout: Duration,
}

impl Deadline {
    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    pub fn passed(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// The error of a request whose deadline passed: `NoLeader` when it never reached a
    /// leader (nothing was proposed), else a timeout.
    pub fn expired(&self, proposed: bool) -> Error {
        if proposed {
            Error::Timeout {
                ms: self.timeout.as_millis() as u64,
                unknown_outcome: true,
            }
        } else {
            Error::NoLeader
        }
    }
}

/// A caller waiting for an answer until its deadline.
pub struct Waiter<T> {
    pub reply: Reply<T>,
    pub deadline: Deadline,
}

impl<T> Waiter<T> {
    /// Answers, unless the caller has gone.
    pub fn send(self, answer: crate::error::Result<T>) {
        self.reply.send(answer);
    }

    /// True when nobody waits any more (deadline passed or caller gone).
    pub fn is_over(&self, now: Instant) -> bool {
        self.deadline.passed(now) || self.reply.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_of_another_life_or_node_are_not_ours() {
        let mut life1 = RequestIds::new(7);
        let (seq, ctx) = life1.next();
        assert_eq!(life1.ours(&ctx), Some(seq));
        let mut life2 = RequestIds::new(7);
        let (seq2, _) = life2.next();
        assert_eq!(seq, seq2, "sequences restart with each life");
        assert_eq!(
            life2.ours(&ctx),
            None,
            "an earlier life's entry is not ours"
        );
        assert_eq!(RequestIds::new(8).ours(&ctx), None, "another node's entry");
        assert_eq!(life1.ours(&ctx[..16]), None, "a short context");
        let forwarded = crate::peer_messages::with_deadline(ctx.clone(), Instant::now());
        assert_eq!(
            life1.ours(&forwarded),
            Some(seq),
            "a forwarded write's, with its deadline"
        );
        assert_eq!(life1.ours(&forwarded[..30]), None, "a deadline cut short");
    }
}
