//! The commands that drive the state machine: what a log entry carries, its wire form
//! (MessagePack, appended variants only: entries already on disk keep decoding), and the
//! checks a command passes before it is proposed.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::txn::Txn;
use super::{sessions, MAX_KEY_BYTES};

/// A replicated command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Write `value` at `key`.
    Set { key: String, value: ByteBuf },
    /// Remove `key`.
    Delete { key: String },
    /// Write `next` (or delete when `None`) only if the current value equals `expected`
    /// (`None`: the key is absent).
    Cas {
        key: String,
        expected: Option<ByteBuf>,
        next: Option<ByteBuf>,
    },
    /// Several sets and deletes applied atomically, in order.
    Batch { ops: Vec<BatchOp> },
    /// Opaque bytes for a state machine of the user's own; the KV state is untouched.
    Raw(ByteBuf),
    /// A membership change the leader refused, in the place of its entry: changes nothing,
    /// and tells its proposer why (an error code of docs/API.md and a message).
    Refused { code: String, reason: String },
    /// Adds `by` to the number at `key` (absent: 0), in JS arithmetic. A value that is not a
    /// number is left as it is and the command reports `ok: false`. (Last variant: the
    /// encoding of the earlier ones, already in logs on disk, stays as it was.)
    Incr { key: String, by: f64 },
    /// Opens a session whose id is this entry's index (see [`sessions`]).
    SessionOpen { ttl_ms: u64 },
    /// Renews the sessions named: a node's keepalives for the sessions it keeps, together.
    SessionRenew { ids: Vec<u64> },
    /// Ends a session now: its holder closed it.
    SessionClose { id: u64 },
    /// Ends a session the leader measured out, unless an entry after `renewed_at` renewed it.
    SessionExpire { id: u64, renewed_at: u64 },
    /// Session `session` asks for lock `name`; `wait`: queue when it is taken (see [`super::locks`]).
    LockAcquire {
        name: String,
        session: u64,
        wait: bool,
    },
    /// Session `session` releases lock `name`, or leaves its queue.
    LockRelease { name: String, session: u64 },
    /// Grants pending lock `name` to its next waiter (appended by the leader).
    LockGrant { name: String },
    /// [`Command::Set`] of a key deleted when session `session` ends (refused, writing
    /// nothing, when the session does not exist).
    SetEphemeral {
        key: String,
        value: ByteBuf,
        session: u64,
    },
    /// [`Command::Cas`] whose new value belongs to session `session` (as `SetEphemeral`).
    CasEphemeral {
        key: String,
        expected: Option<ByteBuf>,
        next: Option<ByteBuf>,
        session: u64,
    },
    /// A transaction (see [`super::txn`]).
    Txn(Txn),
    /// `command` (a write of the user's) applied once: a retry with the same `key` applies
    /// nothing and answers the first one's result (see [`super::idempotency`]).
    Idempotent { key: String, command: Box<Command> },
}

/// One operation of a [`Command::Batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOp {
    Set {
        key: String,
        value: ByteBuf,
    },
    Delete {
        key: String,
    },
    /// A set whose key belongs to session `session` (see [`Command::SetEphemeral`]).
    SetEphemeral {
        key: String,
        value: ByteBuf,
        session: u64,
    },
}

impl Command {
    /// The wire form carried in a log entry.
    pub fn encode(&self) -> Vec<u8> {
        // Sized once for the common commands (a key and a value and a few bytes of framing),
        // instead of growing a few bytes at a time.
        let mut bytes = Vec::with_capacity(self.payload() + 32);
        rmp_serde::encode::write(&mut bytes, self).expect("commands always encode");
        bytes
    }

    /// Bytes of its keys and values: most of its encoding.
    fn payload(&self) -> usize {
        match self {
            Command::Set { key, value } | Command::SetEphemeral { key, value, .. } => {
                key.len() + value.len()
            }
            Command::Delete { key } | Command::Incr { key, .. } => key.len(),
            Command::LockAcquire { name, .. }
            | Command::LockRelease { name, .. }
            | Command::LockGrant { name } => name.len(),
            Command::Cas {
                key,
                expected,
                next,
            }
            | Command::CasEphemeral {
                key,
                expected,
                next,
                ..
            } => {
                key.len()
                    + expected.as_ref().map_or(0, |v| v.len())
                    + next.as_ref().map_or(0, |v| v.len())
            }
            Command::Raw(data) => data.len(),
            Command::Txn(txn) => txn.payload(),
            Command::Idempotent { key, command } => key.len() + 16 + command.payload(),
            Command::SessionRenew { ids } => 9 * ids.len(),
            Command::Batch { .. }
            | Command::Refused { .. }
            | Command::SessionOpen { .. }
            | Command::SessionClose { .. }
            | Command::SessionExpire { .. } => 0,
        }
    }

    /// Parses a log entry's data.
    pub fn decode(data: &[u8]) -> Result<Command, String> {
        rmp_serde::from_slice(data).map_err(|e| e.to_string())
    }

    /// Checks every key of the command.
    pub fn validate(&self) -> Result<(), String> {
        // A key, or a lock's name (`what`): the same bounds.
        let named = |what: &str, key: &str| {
            if key.is_empty() || key.len() > MAX_KEY_BYTES {
                Err(format!(
                    "{what} must be 1-{MAX_KEY_BYTES} bytes of UTF-8, got {} bytes",
                    key.len()
                ))
            } else {
                Ok(())
            }
        };
        let check = |key: &str| named("key", key);
        match self {
            Command::Set { key, .. }
            | Command::Delete { key }
            | Command::Cas { key, .. }
            | Command::SetEphemeral { key, .. }
            | Command::CasEphemeral { key, .. } => check(key),
            Command::LockAcquire { name, .. }
            | Command::LockRelease { name, .. }
            | Command::LockGrant { name } => named("name", name),
            Command::Incr { key, by } if by.is_finite() => check(key),
            Command::Incr { by, .. } => Err(format!("incr needs a finite number, got {by}")),
            Command::Batch { ops } => ops.iter().try_for_each(|op| match op {
                BatchOp::Set { key, .. }
                | BatchOp::Delete { key }
                | BatchOp::SetEphemeral { key, .. } => check(key),
            }),
            Command::Raw(_) | Command::SessionClose { .. } | Command::SessionExpire { .. } => {
                Ok(())
            }
            Command::Refused { .. } => Err("a refusal is not a write".into()),
            Command::SessionOpen { ttl_ms } => {
                use sessions::{MAX_SESSION_TTL_MS as MAX, MIN_SESSION_TTL_MS as MIN};
                if (MIN..=MAX).contains(ttl_ms) {
                    Ok(())
                } else {
                    Err(format!(
                        "a session's ttl must be {MIN}-{MAX} ms, got {ttl_ms}"
                    ))
                }
            }
            Command::SessionRenew { ids } if ids.len() > sessions::MAX_RENEWALS_PER_ENTRY => {
                Err(format!(
                    "one renewal names at most {} sessions",
                    sessions::MAX_RENEWALS_PER_ENTRY
                ))
            }
            Command::SessionRenew { .. } => Ok(()),
            Command::Txn(txn) => txn.validate(check),
            Command::Idempotent { key, command } => {
                use super::idempotency::MAX_IDEMPOTENCY_KEY_BYTES as MAX;
                if key.is_empty() || key.len() > MAX {
                    return Err(format!(
                        "an idempotency key must be 1-{MAX} bytes of UTF-8, got {} bytes",
                        key.len()
                    ));
                }
                match **command {
                    Command::Set { .. }
                    | Command::Delete { .. }
                    | Command::Cas { .. }
                    | Command::Batch { .. }
                    | Command::Raw(_)
                    | Command::Incr { .. }
                    | Command::SetEphemeral { .. }
                    | Command::CasEphemeral { .. }
                    | Command::Txn(_) => command.validate(),
                    _ => Err("only a write of keys or raw data takes an idempotency key".into()),
                }
            }
        }
    }
}
