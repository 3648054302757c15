'use strict';
// The async iterator behind RaftNode.watch(): a queue of changes under a prefix that ends
// when the signal aborts or the node stops.

const { abortError } = require('./errors.js');

class WatchQueue {
  #prefix;
  #signal;
  #onClose;
  #items = [];
  #waiting = null; // { resolve, reject } of a pending next()
  #done = false;
  #error = null;

  constructor(prefix, signal, onClose) {
    this.#prefix = prefix;
    this.#signal = signal;
    this.#onClose = onClose;
    if (signal) {
      if (signal.aborted) this.#fail(abortError(signal));
      else signal.addEventListener('abort', () => this.#fail(abortError(signal)), { once: true });
    }
  }

  push(change) {
    if (this.#done || !change.key.startsWith(this.#prefix)) return;
    if (this.#waiting) {
      const { resolve } = this.#waiting;
      this.#waiting = null;
      resolve({ value: change, done: false });
    } else {
      this.#items.push(change);
    }
  }

  /** Ends the iteration normally (node stopped). */
  close() {
    if (this.#done) return;
    this.#done = true;
    this.#onClose();
    if (this.#waiting) {
      this.#waiting.resolve({ value: undefined, done: true });
      this.#waiting = null;
    }
  }

  #fail(err) {
    if (this.#done) return;
    this.#error = err;
    this.close();
    if (this.#waiting) {
      this.#waiting.reject(err);
      this.#waiting = null;
    }
  }

  next() {
    if (this.#items.length > 0) return Promise.resolve({ value: this.#items.shift(), done: false });
    if (this.#error) return Promise.reject(this.#error);
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

module.exports = { WatchQueue };
