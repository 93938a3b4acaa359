//! The job service: starting, listing, showing, cancelling and retrying extract jobs. The HTTP
//! API (`http/api/jobs.rs`) and the CLI (`steward jobs`) both call it, so both follow the same
//! rules and write the same access-log events.
//!
//! Starting an extract changes two things: the release (`dua_executed -> extracting`, through
//! the release service's compare-and-swap) and the queue (a new job, under a partial unique
//! index that allows one live job per release and kind). The release changes first: of two
//! concurrent starts exactly one wins the compare-and-swap, and a runner never sees a job whose
//! release is not `extracting`. If queueing then fails, the release is handed back with
//! `cancel_extraction`, so a refused start leaves the release as it was.

use std::fmt;
use std::str::FromStr;

use sqlx::AnyConnection;
use uuid::Uuid;

use super::queue::{Job, JobKind, JobQueue, JobState, QueueError};
use crate::audit::{
    AccessEvent, Action as Logged, Actor, AuditError, AuditLog, Client, Outcome, Reason, Target,
};
use crate::auth::{authorize, Action, Denied, Resource};
use crate::domain::release::{ReleaseId, ReleaseStatus, Transition};
use crate::release::{Caller, PreparedTransition, ReleaseService, ServiceError};

/// A job, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub Uuid);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Everything the job service can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum JobServiceError {
    /// The caller may not do this.
    #[error("forbidden: {}", .0 .0.as_str())]
    Forbidden(Denied),
    /// No release has this id.
    #[error("no such release")]
    ReleaseNotFound,
    /// No job has this id.
    #[error("no such job")]
    JobNotFound,
    /// The release is not in the state the operation needs.
    #[error("cannot {action} for release {release}: it is {status}; an extract starts only from dua_executed")]
    ReleaseWrongState {
        /// What was attempted.
        action: &'static str,
        /// The release.
        release: ReleaseId,
        /// Its current state.
        status: ReleaseStatus,
    },
    /// The release is already being extracted (a job started twice runs once).
    #[error("release {release} is already being extracted{}; a job started twice runs once", .job.map(|j| format!(" by job {j}")).unwrap_or_default())]
    AlreadyActive {
        /// The release.
        release: ReleaseId,
        /// The live job, when it is already recorded.
        job: Option<JobId>,
    },
    /// The job is not in a state that allows the operation.
    #[error("job {id} is {state}; {operation} needs it {needed}")]
    JobWrongState {
        /// The job.
        id: JobId,
        /// Its state.
        state: &'static str,
        /// What was attempted.
        operation: &'static str,
        /// The states that allow it.
        needed: &'static str,
    },
    /// An erase job: destruction is retried until done by the server, never cancelled or
    /// retried by hand.
    #[error("job {0} erases a release's data: it is retried until done and cannot be cancelled or retried by hand")]
    ErasingJob(JobId),
    /// The release service refused or failed the release's transition.
    #[error(transparent)]
    Release(ServiceError),
    /// The job queue failed.
    #[error(transparent)]
    Queue(QueueError),
    /// The access log could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<QueueError> for JobServiceError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::NotFound(_) => JobServiceError::JobNotFound,
            QueueError::AlreadyActive { release_id, .. } => JobServiceError::AlreadyActive {
                release: ReleaseId(release_id),
                job: None,
            },
            QueueError::WrongState {
                id,
                state,
                operation,
                needed,
            } => JobServiceError::JobWrongState {
                id: JobId(id),
                state,
                operation,
                needed,
            },
            other => JobServiceError::Queue(other),
        }
    }
}

impl From<ServiceError> for JobServiceError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => JobServiceError::ReleaseNotFound,
            ServiceError::Forbidden(denied) => JobServiceError::Forbidden(denied),
            other => JobServiceError::Release(other),
        }
    }
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The job was queued and is now cancelled; its release is back in `dua_executed`.
    Now,
    /// The job is running; its runner stops it at the next heartbeat.
    Requested,
}

/// A job with its log lines.
#[derive(Debug, Clone)]
pub struct JobDetail {
    /// The job.
    pub job: Job,
    /// Its log lines, in order (Steward's own messages, never row values).
    pub log: Vec<String>,
}

/// The job service.
#[derive(Debug, Clone)]
pub struct JobService {
    queue: JobQueue,
    releases: ReleaseService,
    audit: AuditLog,
}

fn actor(caller: Caller<'_>) -> Actor {
    match caller {
        Caller::Person(p) => Actor::User(p.user_id.0),
        Caller::System => Actor::System,
    }
}

fn is_live(job: &Job) -> bool {
    job.kind == JobKind::Extract && matches!(job.state, JobState::Queued | JobState::Running)
}

impl JobService {
    /// Wires the service over the queue, the release service and the access log.
    pub fn new(queue: JobQueue, releases: ReleaseService, audit: AuditLog) -> Self {
        Self {
            queue,
            releases,
            audit,
        }
    }

    fn authorize(&self, caller: Caller<'_>, action: Action) -> Result<(), JobServiceError> {
        match caller {
            Caller::Person(p) => {
                authorize(p, action, &Resource::Jobs).map_err(JobServiceError::Forbidden)
            }
            // The CLI acts as the server from its shell.
            Caller::System => Ok(()),
        }
    }

    /// Records a job event in the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    async fn record_event(
        &self,
        conn: &mut AnyConnection,
        caller: Caller<'_>,
        action: Logged,
        job: JobId,
        release: ReleaseId,
        reason: Reason,
        client: &Client,
    ) -> Result<(), JobServiceError> {
        let event = AccessEvent::new(
            actor(caller),
            action,
            Target::Job {
                id: job.0,
                release: release.0,
            },
            Outcome::Succeeded,
        )
        .with_reason(reason)
        .with_client(client);
        self.audit.record(conn, &event).await?;
        Ok(())
    }

    async fn live_job(&self, release: ReleaseId) -> Result<Option<Job>, JobServiceError> {
        Ok(self
            .queue
            .list(Some(release.0))
            .await?
            .into_iter()
            .find(is_live))
    }

    /// Checks that the release can move to `extracting` now and prepares that transition
    /// (reads only; the caller applies it in its transaction).
    async fn prepare_extraction(
        &self,
        caller: Caller<'_>,
        release: ReleaseId,
        action: &'static str,
    ) -> Result<PreparedTransition, JobServiceError> {
        let record = self
            .releases
            .record(release)
            .await?
            .ok_or(JobServiceError::ReleaseNotFound)?;
        let live = self.live_job(release).await?;
        // `extracting` without a live job means another start is committing right now: it is
        // the same "started twice".
        if live.is_some() || record.row.status == ReleaseStatus::Extracting {
            return Err(JobServiceError::AlreadyActive {
                release,
                job: live.map(|j| JobId(j.id)),
            });
        }
        if record.row.status != ReleaseStatus::DuaExecuted {
            return Err(JobServiceError::ReleaseWrongState {
                action,
                release,
                status: record.row.status,
            });
        }
        match self
            .releases
            .prepare_transition(caller, release, Transition::StartExtraction, None)
            .await
        {
            Ok(prepared) => Ok(prepared),
            Err(ServiceError::Illegal(_)) => Err(self.lost_race(release, action).await),
            Err(other) => Err(other.into()),
        }
    }

    /// What a start that lost the race for the release tells its caller, read after its
    /// transaction was rolled back.
    async fn lost_race(&self, release: ReleaseId, action: &'static str) -> JobServiceError {
        let now = match self.releases.record(release).await {
            Ok(Some(record)) => record,
            Ok(None) => return JobServiceError::ReleaseNotFound,
            Err(e) => return e.into(),
        };
        if now.row.status == ReleaseStatus::Extracting {
            let job = match self.live_job(release).await {
                Ok(job) => job.map(|j| JobId(j.id)),
                Err(e) => return e,
            };
            return JobServiceError::AlreadyActive { release, job };
        }
        JobServiceError::ReleaseWrongState {
            action,
            release,
            status: now.row.status,
        }
    }

    /// Moves the release to `extracting` and queues its job (new, or the retried `retry`) with
    /// its log line and access event, all in one transaction.
    async fn queue_extraction(
        &self,
        caller: Caller<'_>,
        release: ReleaseId,
        retry: Option<JobId>,
        client: &Client,
    ) -> Result<Job, JobServiceError> {
        let action = if retry.is_some() {
            "retry the extract"
        } else {
            "start an extract"
        };
        let prepared = self.prepare_extraction(caller, release, action).await?;
        let mut tx = self
            .queue
            .database()
            .begin_write()
            .await
            .map_err(QueueError::from)?;
        match self
            .releases
            .apply_transition(&mut tx, caller, &prepared, client)
            .await
        {
            Ok(_) => {}
            Err(ServiceError::Concurrent) => {
                drop(tx);
                return Err(self.lost_race(release, action).await);
            }
            Err(other) => return Err(other.into()),
        }
        let (job, line, logged, reason) = match retry {
            None => (
                self.queue
                    .enqueue_in(&mut tx, JobKind::Extract, release.0)
                    .await?,
                format!("queued by {}", actor(caller)),
                Logged::JobStarted,
                Reason::new("extract job queued"),
            ),
            Some(id) => (
                self.queue.retry_in(&mut tx, id.0).await?,
                format!("retried by {}", actor(caller)),
                Logged::JobRetried,
                Reason::new("job queued again"),
            ),
        };
        self.queue.log_in(&mut tx, job.id, &line).await?;
        self.record_event(
            &mut tx,
            caller,
            logged,
            JobId(job.id),
            release,
            reason,
            client,
        )
        .await?;
        tx.commit().await.map_err(QueueError::from)?;
        Ok(job)
    }

    /// Starts the extract of a release in `dua_executed`: the release moves to `extracting`
    /// and one job is queued. A second start while a job is live is refused.
    #[tracing::instrument(skip(self, caller, client), fields(%release))]
    pub async fn start(
        &self,
        caller: Caller<'_>,
        release: ReleaseId,
        client: &Client,
    ) -> Result<Job, JobServiceError> {
        self.authorize(caller, Action::StartExtract)?;
        self.queue_extraction(caller, release, None, client).await
    }

    /// Jobs, newest first, optionally of one release.
    pub async fn list(
        &self,
        caller: Caller<'_>,
        release: Option<ReleaseId>,
    ) -> Result<Vec<Job>, JobServiceError> {
        self.authorize(caller, Action::ReadJobs)?;
        Ok(self.queue.list(release.map(|r| r.0)).await?)
    }

    /// One job with its log.
    pub async fn show(&self, caller: Caller<'_>, id: JobId) -> Result<JobDetail, JobServiceError> {
        self.authorize(caller, Action::ReadJobs)?;
        let job = self.queue.get(id.0).await?;
        let log = self.queue.log_lines(id.0).await?;
        Ok(JobDetail { job, log })
    }

    /// Cancels a queued job at once (and hands its release back to `dua_executed`), or asks a
    /// running job's runner to stop.
    #[tracing::instrument(skip(self, caller, client), fields(%id))]
    pub async fn cancel(
        &self,
        caller: Caller<'_>,
        id: JobId,
        client: &Client,
    ) -> Result<(Job, Cancelled), JobServiceError> {
        self.authorize(caller, Action::CancelJob)?;
        let job = self.queue.get(id.0).await?;
        if job.kind == JobKind::Destroy {
            return Err(JobServiceError::ErasingJob(id));
        }
        let release = ReleaseId(job.release_id);
        // A queued job cancelled now hands its release back in the same transaction, when the
        // release is still waiting for it (it may have been revoked or expired meanwhile).
        let hand_back = match self
            .releases
            .prepare_transition(caller, release, Transition::CancelExtraction, None)
            .await
        {
            Ok(prepared) => Some(prepared),
            Err(ServiceError::Illegal(_) | ServiceError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
        let mut tx = self
            .queue
            .database()
            .begin_write()
            .await
            .map_err(QueueError::from)?;
        let outcome = match self.queue.request_cancel_in(&mut tx, id.0).await? {
            JobState::Cancelled => Cancelled::Now,
            _ => Cancelled::Requested,
        };
        self.queue
            .log_in(
                &mut tx,
                job.id,
                &match outcome {
                    Cancelled::Now => format!("cancelled by {}", actor(caller)),
                    Cancelled::Requested => format!("cancel requested by {}", actor(caller)),
                },
            )
            .await?;
        if let (Cancelled::Now, Some(prepared)) = (outcome, &hand_back) {
            match self
                .releases
                .apply_transition(&mut tx, caller, prepared, client)
                .await
            {
                Ok(_) | Err(ServiceError::Concurrent) => {}
                Err(other) => return Err(other.into()),
            }
        }
        self.record_event(
            &mut tx,
            caller,
            Logged::JobCancelled,
            id,
            release,
            Reason::new(match outcome {
                Cancelled::Now => "queued job cancelled",
                Cancelled::Requested => "running job asked to stop",
            }),
            client,
        )
        .await?;
        tx.commit().await.map_err(QueueError::from)?;
        let job = self.queue.get(id.0).await?;
        Ok((job, outcome))
    }

    /// Queues a failed or cancelled job again; its release must be back in `dua_executed` and
    /// moves to `extracting` again.
    #[tracing::instrument(skip(self, caller, client), fields(%id))]
    pub async fn retry(
        &self,
        caller: Caller<'_>,
        id: JobId,
        client: &Client,
    ) -> Result<Job, JobServiceError> {
        self.authorize(caller, Action::RetryJob)?;
        let job = self.queue.get(id.0).await?;
        if job.kind == JobKind::Destroy {
            return Err(JobServiceError::ErasingJob(id));
        }
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            return Err(JobServiceError::JobWrongState {
                id,
                state: job.state.as_str(),
                operation: "retry",
                needed: "failed or cancelled",
            });
        }
        self.queue_extraction(caller, ReleaseId(job.release_id), Some(id), client)
            .await
    }
}
