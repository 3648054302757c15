'use strict';
// The async iterator behind RaftNode.watch(): a queue of changes under a prefix that ends
// when the signal aborts or the node stops, or with ERR_WATCH_OVERFLOW when its consumer
// falls more than `maxBuffered` live changes behind (changes keep coming whether it reads or
// not: an unbounded queue would grow without limit). A watch from an index starts with what
// the engine replays (the changes after it, or a resync), then takes live changes after the
// last index replayed: no gap, no duplicate.

const { abortError, RaftError } = require('./errors.js');

/** Changes a watch holds for a consumer that does not keep up, by default. */
const DEFAULT_MAX_BUFFERED = 10_000;

class WatchQueue {
  #prefix;
  #signal;
  #onClose;
  #maxBuffered;
  /** Items from `#head` on are unread (an index instead of shift(): a replay may be long). */
  #items = [];
  #head = 0;
  /** Of the unread items, those replayed (not counted against `maxBuffered`). */
  #replayed = 0;
  /** Live changes at or below this index were replayed already. */
  #floor = -1;
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

  /**
   * Starts with `replay` (changes and a resync, in order), and takes live changes only after
   * index `floor` from now on.
   */
  replay(replay, floor) {
    this.#floor = floor;
    if (this.#done) return;
    for (const item of replay) this.#items.push(item);
    this.#replayed += replay.length;
    this.#wake();
  }

  push(change) {
    if (this.#done || change.index <= this.#floor || !change.key.startsWith(this.#prefix)) return;
    if (this.#unread() - this.#replayed >= this.#maxBuffered) return this.#overflow();
    this.#items.push(change);
    this.#wake();
  }

  #unread() {
    return this.#items.length - this.#head;
  }

  /** Hands the next item to a consumer waiting in next(). */
  #wake() {
    if (this.#waiting && this.#unread() > 0) {
      const { resolve } = this.#waiting;
      this.#waiting = null;
      resolve({ value: this.#take(), done: false });
    }
  }

  #take() {
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#replayed > 0) this.#replayed--;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /**
   * The consumer fell `maxBuffered` changes behind: what it has not read is dropped and the
   * iteration ends with ERR_WATCH_OVERFLOW. `lastIndex` is the last log index whose changes
   * it has all received: resuming after it misses nothing (an entry whose changes it received
   * only in part is replayed whole).
   */
  #overflow() {
    const lastIndex = this.#items[this.#head].index - 1;
    const dropped = this.#unread();
    this.#items = [];
    this.#head = 0;
    this.#replayed = 0;
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
    if (this.#unread() > 0) return Promise.resolve({ value: this.#take(), done: false });
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
    this.#items = [];
    this.#head = 0;
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

module.exports = { WatchQueue, DEFAULT_MAX_BUFFERED };
