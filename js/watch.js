'use strict';
// The async iterator behind RaftNode.watch(): a queue of changes under a prefix that ends
// when the signal aborts or the node stops, or with ERR_WATCH_OVERFLOW when its consumer
// falls more than `maxBuffered` changes behind (changes keep coming whether it reads or not:
// an unbounded queue would grow without limit).

const { abortError, RaftError } = require('./errors.js');

/** Changes a watch holds for a consumer that does not keep up, by default. */
const DEFAULT_MAX_BUFFERED = 10_000;

class WatchQueue {
  #prefix;
  #signal;
  #onClose;
  #maxBuffered;
  #items = [];
  #waiting = null; // { resolve, reject } of a pending next()
  #done = false;
  #error = null;
  #onAbort = () => this.#fail(abortError(this.#signal));

  constructor(prefix, signal, onClose, maxBuffered = DEFAULT_MAX_BUFFERED) {
    this.#prefix = prefix;
    this.#signal = signal;
    this.#onClose = onClose;
    this.#maxBuffered = maxBuffered;
    if (signal) {
      if (signal.aborted) this.#fail(abortError(signal));
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  push(change) {
    if (this.#done || !change.key.startsWith(this.#prefix)) return;
    if (this.#waiting) {
      const { resolve } = this.#waiting;
      this.#waiting = null;
      resolve({ value: change, done: false });
    } else if (this.#items.length < this.#maxBuffered) {
      this.#items.push(change);
    } else {
      this.#overflow();
    }
  }

  /**
   * The consumer fell `maxBuffered` changes behind: what it has not read is dropped and the
   * iteration ends with ERR_WATCH_OVERFLOW. `lastIndex` is the last log index whose changes
   * it has all received: resuming after it misses nothing (an entry whose changes it received
   * only in part is replayed whole).
   */
  #overflow() {
    const lastIndex = this.#items[0].index - 1;
    const dropped = this.#items.length;
    this.#items.length = 0;
    const err = new RaftError(
      'ERR_WATCH_OVERFLOW',
      `the watch fell ${dropped} changes behind (the limit is ${this.#maxBuffered}): its changes after index ${lastIndex} were dropped; watch again from there`,
      { lastIndex },
    );
    this.#fail(err);
  }

  /** Ends the iteration normally (node stopped). */
  close() {
    if (this.#done) return;
    this.#done = true;
    // A long-lived signal does not keep a closed watch (and its node) reachable.
    this.#signal?.removeEventListener('abort', this.#onAbort);
    this.#onClose();
    if (this.#waiting) {
      this.#waiting.resolve({ value: undefined, done: true });
      this.#waiting = null;
    }
  }

  /**
   * Ends the iteration with `err`: a consumer waiting in next() gets it now, one that is not
   * gets it from its next call. (A waiting consumer once got a plain end on abort: the
   * iteration stopped without saying why.)
   */
  #fail(err) {
    if (this.#done) return;
    if (this.#waiting) {
      this.#waiting.reject(err);
      this.#waiting = null;
    } else {
      this.#error = err;
    }
    this.close();
  }

  next() {
    if (this.#items.length > 0) return Promise.resolve({ value: this.#items.shift(), done: false });
    if (this.#error) {
      // Delivered once; the iteration is over after it.
      const err = this.#error;
      this.#error = null;
      return Promise.reject(err);
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  return() {
    this.#items.length = 0;
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

module.exports = { WatchQueue, DEFAULT_MAX_BUFFERED };
