//! The job runner: claims jobs, keeps their leases alive, relays cancel requests, and records
//! the outcome. It runs inside `steward serve` (embedded mode) and as `steward worker`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::queue::{Job, JobQueue, JobState, Lease, QueueError};
use crate::extract::JobControl;

/// How a job's work ended, as its executor reports it.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The work stopped because cancellation was requested (or the lease was lost).
    #[error("cancelled")]
    Cancelled,
    /// The work failed; the message is Steward's own (ids, file names, line numbers; no values).
    /// Another attempt may succeed (a store or network failure), so the job is retried.
    #[error("{0}")]
    Failed(String),
    /// The work failed for a reason no retry can change (invalid source data, configuration or
    /// schema): the job fails at once, without back-off.
    #[error("{0}")]
    Permanent(String),
}

impl ExecutionError {
    /// Whether no later attempt could succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ExecutionError::Permanent(_))
    }
}

/// Does the work of one job. The executor must poll `control` (directly or through the
/// extract pipeline) and must publish only through `publish`-style steps that check the
/// lease with the queue (fencing).
#[async_trait]
pub trait JobExecutor: Send + Sync {
    /// Runs the job to completion, failure or cancellation.
    async fn execute(
        &self,
        job: &Job,
        lease: &Lease,
        control: Arc<JobControl>,
    ) -> Result<(), ExecutionError>;

    /// Hands back what a job that ended without its runner held (the queue's sweep ended it:
    /// its runner died with no attempt left, or after a cancel), so nothing stays stuck.
    async fn abandoned(&self, job: &Job) -> Result<(), ExecutionError>;

    /// Removes what no live job owns any more (a failed attempt whose clean-up also failed, a
    /// job that ended while its runner was cut off). Called periodically by idle runners.
    async fn sweep_orphans(&self) -> Result<u64, ExecutionError>;
}

/// How often an idle runner sweeps orphaned objects and uploads.
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// Runner timing.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// How often an idle runner looks for work.
    pub poll_interval: Duration,
    /// How often a busy runner renews its lease (well under the lease length).
    pub heartbeat_interval: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

/// What one pass of the runner did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// There was nothing to claim.
    Idle,
    /// A job was run and left in this state.
    Ran {
        /// The job.
        job_id: uuid::Uuid,
        /// Its state afterwards.
        state: JobState,
    },
    /// The lease was lost while running; another runner owns the job now.
    LeaseLost {
        /// The job.
        job_id: uuid::Uuid,
    },
}

/// Claims and runs jobs.
pub struct Runner {
    queue: JobQueue,
    executor: Arc<dyn JobExecutor>,
    owner: String,
    config: RunnerConfig,
}

impl Runner {
    /// A runner named `owner` (unique per process: host name and process id, say).
    pub fn new(
        queue: JobQueue,
        executor: Arc<dyn JobExecutor>,
        owner: String,
        config: RunnerConfig,
    ) -> Self {
        Self {
            queue,
            executor,
            owner,
            config,
        }
    }

    /// Claims one job, if any, and runs it to its end.
    #[tracing::instrument(skip(self), fields(owner = %self.owner))]
    pub async fn run_once(&self) -> Result<RunOutcome, QueueError> {
        let Some((job, lease)) = self.queue.claim(&self.owner).await? else {
            return Ok(RunOutcome::Idle);
        };
        tracing::info!(job_id = %job.id, release_id = %job.release_id, attempt = lease.attempt, "job claimed");
        self.queue
            .log(
                job.id,
                &format!("attempt {} started by {}", lease.attempt, self.owner),
            )
            .await?;
        let control = Arc::new(JobControl::default());
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let heartbeat = tokio::spawn(keep_alive(
            self.queue.clone(),
            lease.clone(),
            control.clone(),
            lost.clone(),
            self.config.heartbeat_interval,
        ));
        let started = std::time::Instant::now();
        let result = self.executor.execute(&job, &lease, control.clone()).await;
        heartbeat.abort();
        // The last progress is written too: a job shorter than one heartbeat would otherwise
        // end with none on record. Fenced like a heartbeat, so it also finds a lost lease.
        if let Err(QueueError::LeaseLost(_)) =
            self.queue.heartbeat(&lease, &progress_json(&control)).await
        {
            lost.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(job_id = %job.id, "lease lost; another runner owns the job");
            return Ok(RunOutcome::LeaseLost { job_id: job.id });
        }
        let state = match result {
            Ok(()) => match self.queue.succeed(&lease).await {
                Ok(()) => JobState::Succeeded,
                Err(QueueError::LeaseLost(_)) => {
                    return Ok(RunOutcome::LeaseLost { job_id: job.id })
                }
                Err(e) => return Err(e),
            },
            Err(ExecutionError::Cancelled) => {
                self.queue.log(job.id, "cancelled").await?;
                match self.queue.acknowledge_cancel(&lease).await {
                    Ok(()) => JobState::Cancelled,
                    Err(QueueError::LeaseLost(_)) => {
                        return Ok(RunOutcome::LeaseLost { job_id: job.id })
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(error @ (ExecutionError::Failed(_) | ExecutionError::Permanent(_))) => {
                let permanent = error.is_permanent();
                let message = error.to_string();
                tracing::warn!(job_id = %job.id, error = %message, permanent, "job attempt failed");
                let retry = if permanent {
                    "; not retried: retrying cannot change it"
                } else {
                    ""
                };
                self.queue
                    .log(
                        job.id,
                        &format!("attempt {} failed: {message}{retry}", lease.attempt),
                    )
                    .await?;
                match self.queue.fail(&lease, &message, permanent).await {
                    Ok(state) => state,
                    Err(QueueError::LeaseLost(_)) => {
                        return Ok(RunOutcome::LeaseLost { job_id: job.id })
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        tracing::info!(job_id = %job.id, state = state.as_str(), "job ended");
        crate::metrics::job_finished(
            job.kind.as_str(),
            state.as_str(),
            started.elapsed().as_secs_f64(),
        );
        Ok(RunOutcome::Ran {
            job_id: job.id,
            state,
        })
    }

    /// Ends the jobs whose runner died with no attempt left (or after a cancel) and hands
    /// their work back through the executor. Returns how many were ended.
    pub async fn sweep(&self) -> Result<usize, QueueError> {
        let ended = self.queue.sweep().await?;
        for job in &ended {
            tracing::warn!(job_id = %job.id, state = ?job.state, "job ended by the sweep");
            let _ = self
                .queue
                .log(job.id, "ended by the sweep: its runner stopped")
                .await;
            if let Err(error) = self.executor.abandoned(job).await {
                tracing::error!(job_id = %job.id, %error, "could not hand back the job's work");
            }
        }
        Ok(ended.len())
    }

    /// Runs jobs until `shutdown` completes; a job in progress at shutdown is cancelled
    /// cleanly by dropping its work (its lease expires and another runner retries it).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // The first idle pass sweeps: a restarted runner cleans up after its predecessor.
        let mut last_orphan_sweep = std::time::Instant::now()
            .checked_sub(ORPHAN_SWEEP_EVERY)
            .unwrap_or_else(std::time::Instant::now);
        loop {
            let pass = tokio::select! {
                pass = self.run_once() => pass,
                () = &mut shutdown => return,
            };
            let idle = match pass {
                Ok(RunOutcome::Idle) => true,
                Ok(_) => false,
                Err(error) => {
                    tracing::error!(%error, "job runner pass failed");
                    true
                }
            };
            if let Err(error) = self.sweep().await {
                tracing::error!(%error, "job sweep failed");
            }
            if idle && last_orphan_sweep.elapsed() >= ORPHAN_SWEEP_EVERY {
                last_orphan_sweep = std::time::Instant::now();
                match self.executor.sweep_orphans().await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "orphaned objects and uploads removed"),
                    Err(error) => tracing::error!(%error, "orphan sweep failed"),
                }
            }
            if idle {
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = &mut shutdown => return,
                }
            }
        }
    }
}

/// What a heartbeat records: rows and source bytes done, and the current source's bytes read
/// against its size (for `jobs watch`'s percentage).
fn progress_json(control: &JobControl) -> String {
    let (read, size) = control.current_source();
    serde_json::json!({
        "rows": control.rows(),
        "source_bytes": control.source_bytes(),
        "source_read": read,
        "source_size": size,
    })
    .to_string()
}

/// Renews the lease on a timer; relays a cancel request to the work; flags a lost lease and
/// stops the work, so a runner that stalled never publishes after another took over.
async fn keep_alive(
    queue: JobQueue,
    lease: Lease,
    control: Arc<JobControl>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match queue.heartbeat(&lease, &progress_json(&control)).await {
            Ok(ack) if ack.cancel_requested => control.cancel(),
            Ok(_) => {}
            Err(QueueError::LeaseLost(_)) => {
                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                control.cancel();
                return;
            }
            Err(error) => tracing::warn!(%error, "heartbeat failed; retrying"),
        }
    }
}
