//! Writes and reads that cross N-API in batches: JS encodes every operation issued in one
//! turn of its event loop into one buffer (`js/batch.js` writes the format read here), and
//! the answers come back, many to a buffer, through one threadsafe-function call. A write no
//! longer costs a JS call, a tokio task, a timer and a threadsafe call of its own.
//!
//! An operation: `kind u8` (1 set, 2 delete, 3 cas, 4 incr, 5 propose, 6 get), `id u32`,
//! `timeout_ms u32`, `flags u8` (bit 0: forward; bits 1-2 of a get: 0 linearizable, 1 lease,
//! 2 local; bit 3 of a write: an idempotency key follows), the key (`u32` length, UTF-8),
//! then by kind: set and propose a value (`u32` length, bytes); cas the expected and the next
//! value (`i32` length, -1 for none, bytes); incr an `f64`; and last the idempotency key
//! (`u32` length, UTF-8) when flagged. Little-endian throughout.
//!
//! An answer: `id u32`, then `0` and a write's `index f64`, `term f64`, `ok u8` (bit 0: ok,
//! bit 1: a retry's duplicate) and value
//! (`i32` length, -1 for none, bytes); or `1` and a read's value (the same); or `2` and a
//! failure's code (`u8` length, ASCII), message (`u32` length, UTF-8) and leader (`i32`
//! length, -1 for none, UTF-8).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use super::errors::{thrown, Thrown};
use super::NativeRaftNode;
use crate::sync::Recover;
use crate::{Command, Consistency, Error as EngineError, ReadOptions, WriteOptions};

/// The JS side of the answers: weak, so that it keeps the event loop alive only while JS
/// awaits answers (`hold`).
pub type AnswerCallback = ThreadsafeFunction<Buffer, (), Buffer, Status, false, true>;

/// Answers waiting to cross into JS, and the callback that takes them.
pub struct Answers {
    encoded: Mutex<Vec<u8>>,
    /// Written only to hold or let go of the event loop.
    callback: RwLock<AnswerCallback>,
}

impl Answers {
    /// Answers delivered to `callback`.
    pub fn new(callback: AnswerCallback) -> Arc<Self> {
        Arc::new(Answers {
            encoded: Mutex::new(Vec::new()),
            callback: RwLock::new(callback),
        })
    }

    /// Adds one answer (on the driver's thread, mostly): it crosses with the rest of the
    /// turn's at [`Answers::flush`].
    fn push(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        encode(&mut self.encoded.lock().recover());
    }

    /// Delivers the answers gathered so far, in one call into JS: at the end of each driver
    /// turn, and after a submit answered some at once (refusals, local reads). Returns
    /// whether there were any.
    pub fn flush(&self) -> bool {
        let batch = std::mem::take(&mut *self.encoded.lock().recover());
        if batch.is_empty() {
            return false;
        }
        let callback = self.callback.read().recover();
        callback.call(batch.into(), ThreadsafeFunctionCallMode::NonBlocking);
        true
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
    }
}

fn put_failure(out: &mut Vec<u8>, error: &EngineError) {
    out.push(2);
    let code = error.code().as_bytes();
    out.push(code.len() as u8);
    out.extend_from_slice(code);
    let message = error.to_string();
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    let leader = match error {
        EngineError::NotLeader { leader } => leader.as_deref(),
        _ => None,
    };
    put_bytes(out, leader.map(str::as_bytes));
}

/// One operation as JS encoded it.
enum Op {
    Write {
        id: u32,
        command: Command,
        options: WriteOptions,
        /// The answer carries the value after the write (cas, incr), not the one before.
        with_value: bool,
    },
    Read {
        id: u32,
        key: String,
        options: ReadOptions,
    },
}

/// Reads the batch format; `None` when it is cut short or malformed.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }

    fn f64(&mut self) -> Option<f64> {
        self.take(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        self.take(len).map(<[u8]>::to_vec)
    }

    fn optional(&mut self) -> Option<Option<Vec<u8>>> {
        let len = self.u32()? as i32;
        if len < 0 {
            return Some(None);
        }
        self.take(len as usize).map(|b| Some(b.to_vec()))
    }

    fn key(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }

    fn op(&mut self) -> Option<Op> {
        let kind = self.u8()?;
        let id = self.u32()?;
        let timeout = Duration::from_millis(u64::from(self.u32()?));
        let flags = self.u8()?;
        let key = self.key()?;
        let options = WriteOptions {
            timeout,
            forward: flags & 1 != 0,
        };
        let write = |command, with_value| Op::Write {
            id,
            command,
            options,
            with_value,
        };
        let mut op = match kind {
            1 => {
                let value = self.bytes()?.into();
                write(Command::Set { key, value }, false)
            }
            2 => write(Command::Delete { key }, false),
            3 => {
                let expected = self.optional()?.map(Into::into);
                let next = self.optional()?.map(Into::into);
                let command = Command::Cas {
                    key,
                    expected,
                    next,
                };
                write(command, true)
            }
            4 => write(
                Command::Incr {
                    key,
                    by: self.f64()?,
                },
                true,
            ),
            5 => write(Command::Raw(self.bytes()?.into()), false),
            6 => {
                let consistency = match (flags >> 1) & 3 {
                    0 => Consistency::Linearizable,
                    1 => Consistency::Lease,
                    2 => Consistency::Local,
                    _ => return None,
                };
                let options = ReadOptions {
                    consistency,
                    timeout,
                };
                Op::Read { id, key, options }
            }
            _ => return None,
        };
        if flags & 8 != 0 {
            let once = self.key()?;
            let Op::Write { command, .. } = &mut op else {
                return None;
            };
            let write = std::mem::replace(command, Command::Raw(Default::default()));
            *command = Command::Idempotent {
                key: once,
                command: Box::new(write),
            };
        }
        Some(op)
    }
}

#[napi]
impl NativeRaftNode {
    /// Submits the operations encoded in `ops` (see the module docs); their answers come
    /// back through the `onAnswers` callback given to `start`, many per call. Nothing of a
    /// malformed batch is submitted.
    #[napi]
    pub fn submit(&self, ops: Buffer) -> std::result::Result<(), Thrown> {
        let handle = self.handle().map_err(thrown)?;
        let answers = self.answers().map_err(thrown)?;
        let mut reader = Reader { bytes: &ops };
        let mut parsed = Vec::new();
        while !reader.bytes.is_empty() {
            let op = reader.op().ok_or_else(|| {
                thrown(EngineError::Internal(
                    "a malformed batch of operations".into(),
                ))
            })?;
            parsed.push(op);
        }
        for op in parsed {
            let answers = Arc::clone(&answers);
            match op {
                Op::Write {
                    id,
                    command,
                    options,
                    with_value,
                } => handle.submit_write(command, options, move |outcome| {
                    answers.push(|out| {
                        out.extend_from_slice(&id.to_le_bytes());
                        match outcome {
                            Ok(o) => {
                                out.push(0);
                                out.extend_from_slice(&(o.index as f64).to_le_bytes());
                                out.extend_from_slice(&(o.term as f64).to_le_bytes());
                                out.push(u8::from(o.ok) | u8::from(o.duplicate) << 1);
                                put_bytes(out, o.value.as_deref().filter(|_| with_value));
                            }
                            Err(error) => put_failure(out, &error),
                        }
                    })
                }),
                Op::Read { id, key, options } => handle.submit_read(key, options, move |value| {
                    answers.push(|out| {
                        out.extend_from_slice(&id.to_le_bytes());
                        match value {
                            Ok(value) => {
                                out.push(1);
                                put_bytes(out, value.as_deref());
                            }
                            Err(error) => put_failure(out, &error),
                        }
                    })
                }),
            }
        }
        // Answered at once (refusals, local reads): no turn of the driver will deliver them.
        answers.flush();
        Ok(())
    }

    /// Keeps the event loop alive while JS awaits answers (`true`), or lets it go.
    #[napi]
    pub fn hold(&self, env: Env, awaiting: bool) -> std::result::Result<(), Thrown> {
        let answers = self.answers().map_err(thrown)?;
        let mut callback = answers.callback.write().recover();
        // napi-rs deprecates these in favour of cloning, which counts Rust references; the
        // event loop's reference is napi's own (napi_ref_threadsafe_function).
        #[allow(deprecated)]
        let held = if awaiting {
            callback.refer(&env)
        } else {
            callback.unref(&env)
        };
        held.map_err(|e| thrown(EngineError::Internal(e.to_string())))
    }
}

impl NativeRaftNode {
    fn answers(&self) -> crate::Result<Arc<Answers>> {
        self.answers
            .lock()
            .recover()
            .clone()
            .ok_or(EngineError::Stopped)
    }
}
