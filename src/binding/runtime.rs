//! The tokio runtime the addon's nodes run on: napi-rs's, with one worker fewer than the
//! cores this process may use (at least one), so that the JavaScript thread keeps a core to
//! itself. Measured on a 2-core machine, 3 nodes in one process (`npm run bench`): with two
//! workers, the workers and the JavaScript thread took turns on the two cores and spent
//! 1.3 cores between them spinning and stealing each other's tasks; one worker gave
//! sequential writes a lower p50 (0.110 against 0.117 ms) and 256 writes in flight 10% more
//! writes/s. `TOKIO_WORKER_THREADS` in the environment still decides, as tokio documents.

#[napi_derive::module_init]
fn init() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        // Counts the CPU quota of a container (cgroups), not only the host's cores.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    // Should it fail (it does not in practice), napi-rs builds its default runtime.
    if let Ok(runtime) = builder.build() {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}
