//! `steward worker`: a job runner without an HTTP listener. Any number of workers, on any
//! machines, share one database and one bucket; the queue's leases make each job run once.

use std::sync::Arc;

use crate::http::server::shutdown_signal;

use crate::app::{build_state, extract_runner, runner_owner, StartupError};
use crate::clock::SystemClock;
use crate::config::Settings;

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Steward's database, object store, keys or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The process cannot listen for SIGTERM or Ctrl-C, so it could not be stopped cleanly.
    #[error("cannot listen for {signal}: {source}")]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Connects to the database and object store, prints the runner's owner id and runs jobs until
/// Ctrl-C or SIGTERM. A job in progress at shutdown is left to its lease: another runner takes
/// it over once the lease expires.
pub async fn run(settings: Settings) -> Result<(), WorkerError> {
    super::start_metrics(&settings).map_err(StartupError::Metrics)?;
    let state = build_state(settings, Arc::new(SystemClock)).await?;
    // Installed before the owner id is printed: whoever reads that line may signal at once.
    let shutdown = shutdown_signal().map_err(|source| WorkerError::Signal {
        signal: "SIGTERM and Ctrl-C",
        source,
    })?;
    let owner = runner_owner("worker");
    println!("Steward worker {owner} is running jobs (Ctrl-C or SIGTERM stops it)");
    tracing::info!(%owner, "worker started");
    extract_runner(&state, owner.clone())
        .run_until(shutdown)
        .await;
    tracing::info!(%owner, "worker stopped");
    println!("worker {owner} stopped");
    state.db.close().await;
    Ok(())
}
