'use strict';
// RaftError and the translation of native failures into it.

const CODES = Object.freeze([
  'ERR_NOT_LEADER',
  'ERR_NO_LEADER',
  'ERR_TIMEOUT',
  'ERR_STOPPED',
  'ERR_TOO_LARGE',
  'ERR_STORAGE',
  'ERR_ADDR_IN_USE',
  'ERR_CONF_CHANGE_IN_PROGRESS',
  'ERR_UNKNOWN_MEMBER',
  'ERR_INVALID',
  'ERR_CONFLICT',
  'ERR_REMOVED',
  'ERR_INTERNAL',
  'ERR_CALLBACK',
  'ERR_OVERLOADED',
  'ERR_WATCH_OVERFLOW',
  'ERR_SESSION_LOST',
  'ERR_LOCK_TIMEOUT',
  'ERR_FENCED',
]);

/**
 * Marks a RaftError, whichever copy of this package made it (an application may load two:
 * its own and a library's), so that `instanceof RaftError` holds across copies.
 */
const kRaftError = Symbol.for('raftline.RaftError');

class RaftError extends Error {
  /**
   * @param {string} code one of RaftError.codes
   * @param {string} message
   * @param {{ leaderId?: string | null, lastIndex?: number, cause?: unknown }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'RaftError';
    this.code = code;
    if (code === 'ERR_NOT_LEADER') this.leaderId = extra.leaderId ?? null;
    if (extra.lastIndex !== undefined) this.lastIndex = extra.lastIndex;
  }

  get [kRaftError]() {
    return true;
  }

  static [Symbol.hasInstance](value) {
    return value !== null && typeof value === 'object' && value[kRaftError] === true;
  }
}
RaftError.codes = CODES;

/**
 * A RaftError for how a native call failed: the NativeFailure an async call resolved with, or
 * the error a synchronous call threw (its `code` is the engine's, and it stays as `cause`).
 * Anything else (not the engine's) becomes ERR_INVALID with the original as `cause`.
 */
function fromNative(err) {
  if (err instanceof RaftError) return err;
  const code = err !== null && typeof err === 'object' ? err.code : undefined;
  if (typeof code === 'string' && CODES.includes(code)) {
    const cause = err instanceof Error ? err : undefined;
    return new RaftError(code, err.message, { leaderId: err.leaderId ?? null, cause });
  }
  const text = err && typeof err.message === 'string' ? err.message : String(err);
  return new RaftError('ERR_INVALID', text, { cause: err });
}

/** What a user callback (event listener, runWhileLeader job) threw, as an `error` event. */
function callbackError(thrown, where) {
  const text = thrown instanceof Error ? thrown.message : String(thrown);
  return new RaftError('ERR_CALLBACK', `${where} threw: ${text}`, { cause: thrown });
}

/**
 * The rejection of an aborted call: the standard AbortError, keeping the signal's reason (a
 * reason that is itself an AbortError is returned as is; any other, such as the TimeoutError of
 * `AbortSignal.timeout()` or the caller's own error, becomes its `cause`).
 */
function abortError(signal) {
  const reason = signal && signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  const err = new DOMException('The operation was aborted', 'AbortError');
  if (reason !== undefined) Object.defineProperty(err, 'cause', { value: reason, configurable: true, writable: true });
  return err;
}

module.exports = { RaftError, fromNative, abortError, callbackError };
