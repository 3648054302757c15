// Shared test helpers: conditions with deadlines, never fixed sleeps.
import net from 'node:net';

/** `n` loopback ports free right now (for members whose URLs must be known up front). */
export function freePorts(n) {
  return Promise.all(
    Array.from({ length: n }, () => new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    })),
  );
}

/** Resolves once `check()` is truthy, re-checking every few ms; rejects after `timeoutMs`. */
export async function waitFor(check, { timeoutMs = 10_000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Resolves with the first `event` payload on `emitter` that satisfies `match`. */
export function nextEvent(emitter, event, match = () => true, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(e);
    };
    emitter.on(event, on);
  });
}
