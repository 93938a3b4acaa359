//! The erase job: the durable queue's `destroy` jobs run [`DestructionService::erase`], whose
//! steps are idempotent, so a retry after any failure (or a runner killed anywhere) continues
//! where the last attempt stopped. A job out of attempts is queued again by the scheduled
//! round: destruction is retried until it is done.

use std::sync::Arc;

use async_trait::async_trait;

use super::{DestructionError, DestructionService};
use crate::domain::release::ReleaseId;
use crate::extract::JobControl;
use crate::jobs::{ExecutionError, Job, JobExecutor, Lease};

/// Runs `destroy` jobs.
#[derive(Debug, Clone)]
pub struct DestructionExecutor {
    service: DestructionService,
}

impl DestructionExecutor {
    /// An executor over the destruction service.
    pub fn new(service: DestructionService) -> Self {
        Self { service }
    }
}

#[async_trait]
impl JobExecutor for DestructionExecutor {
    #[tracing::instrument(skip_all, fields(job_id = %job.id, release_id = %job.release_id, attempt = lease.attempt))]
    async fn execute(
        &self,
        job: &Job,
        lease: &Lease,
        _control: Arc<JobControl>,
    ) -> Result<(), ExecutionError> {
        // Erasing is never cancelled half-way on request: every step is safe to stop after,
        // and the next attempt finishes it.
        match self.service.erase(ReleaseId(job.release_id), None).await {
            Ok(_) => Ok(()),
            Err(DestructionError::NoDemand(id)) => Err(ExecutionError::Permanent(format!(
                "release {id} has no destruction demand"
            ))),
            Err(error) => Err(ExecutionError::Failed(format!("erasing: {error}"))),
        }
    }

    async fn abandoned(&self, _job: &Job) -> Result<(), ExecutionError> {
        // Nothing to hand back: the demand stays, and the scheduled round queues the job again.
        Ok(())
    }

    async fn sweep_orphans(&self) -> Result<u64, ExecutionError> {
        Ok(0)
    }
}
