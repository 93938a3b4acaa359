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

use uuid::Uuid;

use super::queue::{Job, JobKind, JobQueue, JobState, QueueError};
use crate::audit::{
    AccessEvent, Action as Logged, Actor, AuditError, AuditLog, Client, Outcome, Reason, Target,
};
use crate::auth::{authorize, Action, Denied, Resource};
use crate::domain::release::{ReleaseId, ReleaseStatus, Transition};
use crate::release::{Caller, ReleaseService, ServiceError};

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

    async fn log_event(
        &self,
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
        self.audit.append(&event).await?;
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

    /// Moves the release to `extracting`; a lost race with another start is reported as the
    /// job already being active, since the winner is queueing it.
    async fn begin_extraction(
        &self,
        caller: Caller<'_>,
        release: ReleaseId,
        action: &'static str,
        client: &Client,
    ) -> Result<(), JobServiceError> {
        let record = self
            .releases
            .record(release)
            .await?
            .ok_or(JobServiceError::ReleaseNotFound)?;
        let live = self.live_job(release).await?;
        // `extracting` without a live job means another start is between its transition and
        // its enqueue: it is the same "started twice".
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
            .transition(caller, release, Transition::StartExtraction, None, client)
            .await
        {
            Ok(_) => Ok(()),
            Err(ServiceError::Concurrent | ServiceError::Illegal(_)) => {
                let now = self
                    .releases
                    .record(release)
                    .await?
                    .ok_or(JobServiceError::ReleaseNotFound)?;
                if now.row.status == ReleaseStatus::Extracting {
                    let job = self.live_job(release).await?.map(|j| JobId(j.id));
                    return Err(JobServiceError::AlreadyActive { release, job });
                }
                Err(JobServiceError::ReleaseWrongState {
                    action,
                    release,
                    status: now.row.status,
                })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Hands the release back (`extracting -> dua_executed`) after queueing failed, so a
    /// refused start changes nothing. A failure here is logged: the original error matters more.
    async fn undo_extraction(&self, caller: Caller<'_>, release: ReleaseId, client: &Client) {
        if let Err(error) = self
            .releases
            .transition(caller, release, Transition::CancelExtraction, None, client)
            .await
        {
            tracing::error!(%release, %error, "could not hand the release back after queueing failed");
        }
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
        self.begin_extraction(caller, release, "start an extract", client)
            .await?;
        let job = match self.queue.enqueue(JobKind::Extract, release.0).await {
            Ok(job) => job,
            Err(error) => {
                self.undo_extraction(caller, release, client).await;
                return Err(error.into());
            }
        };
        self.queue
            .log(job.id, &format!("queued by {}", actor(caller)))
            .await?;
        self.log_event(
            caller,
            Logged::JobStarted,
            JobId(job.id),
            release,
            Reason::new("extract job queued"),
            client,
        )
        .await?;
        Ok(job)
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
        let outcome = match self.queue.request_cancel(id.0).await? {
            JobState::Cancelled => Cancelled::Now,
            _ => Cancelled::Requested,
        };
        let job = self.queue.get(id.0).await?;
        self.queue
            .log(
                job.id,
                &match outcome {
                    Cancelled::Now => format!("cancelled by {}", actor(caller)),
                    Cancelled::Requested => format!("cancel requested by {}", actor(caller)),
                },
            )
            .await?;
        if outcome == Cancelled::Now {
            self.hand_back(caller, ReleaseId(job.release_id), client)
                .await?;
        }
        self.log_event(
            caller,
            Logged::JobCancelled,
            id,
            ReleaseId(job.release_id),
            Reason::new(match outcome {
                Cancelled::Now => "queued job cancelled",
                Cancelled::Requested => "running job asked to stop",
            }),
            client,
        )
        .await?;
        Ok((job, outcome))
    }

    /// After a queued job was cancelled: the release goes back to `dua_executed` unless it has
    /// moved on meanwhile (revoked, expired), which is not an error of the cancel.
    async fn hand_back(
        &self,
        caller: Caller<'_>,
        release: ReleaseId,
        client: &Client,
    ) -> Result<(), JobServiceError> {
        let Some(record) = self.releases.record(release).await? else {
            return Ok(());
        };
        if record.row.status != ReleaseStatus::Extracting || self.live_job(release).await?.is_some()
        {
            return Ok(());
        }
        match self
            .releases
            .transition(caller, release, Transition::CancelExtraction, None, client)
            .await
        {
            Ok(_) | Err(ServiceError::Concurrent | ServiceError::Illegal(_)) => Ok(()),
            Err(other) => Err(other.into()),
        }
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
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            return Err(JobServiceError::JobWrongState {
                id,
                state: job.state.as_str(),
                operation: "retry",
                needed: "failed or cancelled",
            });
        }
        let release = ReleaseId(job.release_id);
        self.begin_extraction(caller, release, "retry the extract", client)
            .await?;
        let job = match self.queue.retry(id.0).await {
            Ok(job) => job,
            Err(error) => {
                self.undo_extraction(caller, release, client).await;
                return Err(error.into());
            }
        };
        self.queue
            .log(job.id, &format!("retried by {}", actor(caller)))
            .await?;
        self.log_event(
            caller,
            Logged::JobRetried,
            id,
            release,
            Reason::new("job queued again"),
            client,
        )
        .await?;
        Ok(job)
    }
}
