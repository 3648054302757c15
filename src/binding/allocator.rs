//! The addon's allocator: mimalloc, for the Rust side of the addon only (Node's own
//! allocations are untouched).
//!
//! Why: the engine allocates and frees per raft message, per entry and per frame on every
//! tokio worker, and memory allocated on one thread is often freed on another. With glibc's
//! malloc, 42% of the engine threads' time went to malloc, free and fastbin consolidation at
//! 256 writes in flight (perf, 3 nodes in one process). With mimalloc's thread-local heaps,
//! measured in turns against the commit before (`npm run bench -- --against`): +23% writes/s
//! in memory at 256 in flight, +21% at 64, +32% durable, p50 latency -14%.
//!
//! Why mimalloc's v2 line: the v3 line (the crate's default) crashed in `mi_thread_init`
//! about one run in three when worker threads loaded the addon (`__test__/workers.test.mjs`:
//! the first thread to allocate was a worker, which later exited); v2 passed 56 runs of
//! the same fixture in a row.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
