//! The durable job queue: enqueue, claim with a lease, heartbeat, finish (fenced), retry with
//! exponential back-off, cancel.
//!
//! Every update a runner makes is conditioned on its lease (`lease_owner` and the attempt
//! number), so a runner that lost its lease (it stalled and another took the job over) cannot
//! mark the job done: its update matches no row and it gets [`QueueError::LeaseLost`].

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::db::{timestamp, Backend, Database, DbError};

/// What kind of work a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Build, encrypt and store a release's extract.
    Extract,
    /// Erase a release's data after a destruction demand.
    Destroy,
}

impl JobKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Extract => "extract",
            JobKind::Destroy => "destroy",
        }
    }

    fn parse(text: &str) -> Result<Self, QueueError> {
        match text {
            "extract" => Ok(JobKind::Extract),
            "destroy" => Ok(JobKind::Destroy),
            other => Err(QueueError::Corrupt(format!("unknown job kind {other:?}"))),
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to be claimed (possibly not before `run_after`).
    Queued,
    /// Claimed by a runner holding a lease.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Out of attempts, or failed for good.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Result<Self, QueueError> {
        Ok(match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            other => return Err(QueueError::Corrupt(format!("unknown job state {other:?}"))),
        })
    }
}

/// One job, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Its id.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// The release it works on.
    pub release_id: Uuid,
    /// Where it is.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed before it fails for good.
    pub max_attempts: i64,
    /// Not claimable before this time (back-off).
    pub run_after: OffsetDateTime,
    /// The runner holding the lease, while running.
    pub lease_owner: Option<String>,
    /// When the lease runs out unless renewed.
    pub lease_expires_at: Option<OffsetDateTime>,
    /// The last heartbeat.
    pub heartbeat_at: Option<OffsetDateTime>,
    /// Whether someone asked to cancel it.
    pub cancel_requested: bool,
    /// Progress as JSON (rows and bytes per dataset).
    pub progress: String,
    /// The last error (Steward's own message, never PHI).
    pub error: Option<String>,
    /// When it was queued.
    pub created_at: OffsetDateTime,
    /// When it ended.
    pub finished_at: Option<OffsetDateTime>,
}

/// Proof that a runner holds a job: required for every update a runner makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: Uuid,
    /// The runner.
    pub owner: String,
    /// The attempt this lease belongs to.
    pub attempt: i64,
}

/// Queue timing.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// Attempts before a job fails for good.
    pub max_attempts: i64,
    /// Back-off before the second attempt; doubled for each further one.
    pub backoff_base: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_attempts: 3,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(15 * 60),
        }
    }
}

/// Queue failures.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The release already has a queued or running job of this kind.
    #[error("release {release_id} already has a {kind} job queued or running")]
    AlreadyActive {
        /// The release.
        release_id: Uuid,
        /// The kind.
        kind: &'static str,
    },
    /// No job has this id.
    #[error("job {0} not found")]
    NotFound(Uuid),
    /// The runner's lease expired or was taken over; it must stop without publishing.
    #[error("lease on job {0} was lost")]
    LeaseLost(Uuid),
    /// The job is not in a state that allows the operation.
    #[error("job {id} is {state}; {operation} needs it {needed}")]
    WrongState {
        /// The job.
        id: Uuid,
        /// Its state.
        state: &'static str,
        /// What was attempted.
        operation: &'static str,
        /// The states that allow it.
        needed: &'static str,
    },
    /// A stored row does not parse.
    #[error("job table holds a malformed row: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        QueueError::Database(DbError::Sqlx(e))
    }
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// Someone asked to cancel: stop, abort uploads, then call [`JobQueue::acknowledge_cancel`].
    pub cancel_requested: bool,
}

/// The job queue in the database.
#[derive(Debug, Clone)]
pub struct JobQueue {
    db: Database,
    clock: SharedClock,
    config: QueueConfig,
}

const COLUMNS: &str =
    "id, kind, release_id, state, attempts, max_attempts, run_after, lease_owner, \
     lease_expires_at, heartbeat_at, cancel_requested, progress, error, created_at, finished_at";

impl JobQueue {
    /// The queue in `db`.
    pub fn new(db: Database, clock: SharedClock, config: QueueConfig) -> Self {
        Self { db, clock, config }
    }

    /// The database the queue lives in, for callers that change a job together with other
    /// state in one transaction.
    pub fn database(&self) -> &Database {
        &self.db
    }

    fn now(&self) -> Result<(OffsetDateTime, String), QueueError> {
        let now = self.clock.now();
        Ok((now, timestamp::encode(now)?))
    }

    /// Queues a job for a release; refused while one of the same kind is queued or running.
    pub async fn enqueue(&self, kind: JobKind, release_id: Uuid) -> Result<Job, QueueError> {
        let mut conn = self.db.pool().acquire().await?;
        self.enqueue_in(&mut conn, kind, release_id).await
    }

    /// [`JobQueue::enqueue`] in the caller's transaction.
    pub async fn enqueue_in(
        &self,
        conn: &mut AnyConnection,
        kind: JobKind,
        release_id: Uuid,
    ) -> Result<Job, QueueError> {
        let (_, now) = self.now()?;
        let id = Uuid::new_v4();
        let inserted = sqlx::query(&format!(
            "INSERT INTO jobs (id, kind, release_id, state, attempts, max_attempts, run_after, \
             progress, created_at, updated_at) VALUES ($1, $2, $3, 'queued', 0, $4, $5, '{{}}', $5, $5) \
             RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(kind.as_str())
        .bind(release_id.to_string())
        .bind(self.config.max_attempts)
        .bind(&now)
        .fetch_one(&mut *conn)
        .await;
        match inserted {
            Ok(row) => job_from_row(&row),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(QueueError::AlreadyActive {
                    release_id,
                    kind: kind.as_str(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Claims the next claimable job for `owner`: a queued job whose back-off has passed, or a
    /// running job whose lease expired (its runner died). Returns the job and the lease.
    pub async fn claim(&self, owner: &str) -> Result<Option<(Job, Lease)>, QueueError> {
        let (now, now_text) = self.now()?;
        let expires = timestamp::encode(now + self.config.lease)?;
        // PostgreSQL: SKIP LOCKED lets concurrent runners pass over a row another is claiming.
        // SQLite: the single writer makes the UPDATE atomic by itself.
        let lock = match self.db.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, \
             heartbeat_at = $3, attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM jobs \
                 WHERE ((state = 'queued' AND run_after <= $3) \
                        OR (state = 'running' AND lease_expires_at < $3)) \
                   AND attempts < max_attempts AND cancel_requested = 0 \
                 ORDER BY run_after, created_at LIMIT 1 {lock}) \
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(&expires)
        .bind(&now_text)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let job = job_from_row(&row)?;
        let lease = Lease {
            job_id: job.id,
            owner: owner.to_owned(),
            attempt: job.attempts,
        };
        Ok(Some((job, lease)))
    }

    /// Renews the lease and records progress; tells the runner whether to cancel.
    pub async fn heartbeat(
        &self,
        lease: &Lease,
        progress_json: &str,
    ) -> Result<HeartbeatAck, QueueError> {
        let (now, now_text) = self.now()?;
        let expires = timestamp::encode(now + self.config.lease)?;
        let row = sqlx::query(
            "UPDATE jobs SET heartbeat_at = $1, lease_expires_at = $2, progress = $3, updated_at = $1 \
             WHERE id = $4 AND lease_owner = $5 AND attempts = $6 AND state = 'running' \
             RETURNING cancel_requested",
        )
        .bind(&now_text)
        .bind(&expires)
        .bind(progress_json)
        .bind(lease.job_id.to_string())
        .bind(&lease.owner)
        .bind(lease.attempt)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(QueueError::LeaseLost(lease.job_id))?;
        Ok(HeartbeatAck {
            cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        })
    }

    /// Marks the job succeeded; fails with `LeaseLost` if the lease is no longer held.
    pub async fn succeed(&self, lease: &Lease) -> Result<(), QueueError> {
        self.finish_leased(lease, JobState::Succeeded, None).await
    }

    // An earlier attempt's error stays on a cancelled job (it says why it was retried), but a
    // job that succeeded has no error: `finish_leased` clears it for `Succeeded`.

    /// Acknowledges a cancel request after the runner stopped and cleaned up.
    pub async fn acknowledge_cancel(&self, lease: &Lease) -> Result<(), QueueError> {
        self.finish_leased(lease, JobState::Cancelled, None).await
    }

    /// Records a failed attempt: back to the queue after a back-off while attempts remain and
    /// the failure is not `permanent`, failed for good otherwise. Returns the new state.
    pub async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        permanent: bool,
    ) -> Result<JobState, QueueError> {
        if permanent || lease.attempt >= self.config.max_attempts {
            self.finish_leased(lease, JobState::Failed, Some(error))
                .await?;
            return Ok(JobState::Failed);
        }
        let (now, now_text) = self.now()?;
        let run_after = timestamp::encode(now + self.backoff(lease.attempt))?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = 'queued', run_after = $1, lease_owner = NULL, \
             lease_expires_at = NULL, error = $2, updated_at = $3 \
             WHERE id = $4 AND lease_owner = $5 AND attempts = $6 AND state = 'running'",
        )
        .bind(&run_after)
        .bind(error)
        .bind(&now_text)
        .bind(lease.job_id.to_string())
        .bind(&lease.owner)
        .bind(lease.attempt)
        .execute(self.db.pool())
        .await?;
        if updated.rows_affected() == 0 {
            return Err(QueueError::LeaseLost(lease.job_id));
        }
        Ok(JobState::Queued)
    }

    /// The wait before attempt `attempt + 1`: base, doubled per attempt, capped.
    pub fn backoff(&self, attempt: i64) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        self.config
            .backoff_base
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.config.backoff_max)
    }

    async fn finish_leased(
        &self,
        lease: &Lease,
        state: JobState,
        error: Option<&str>,
    ) -> Result<(), QueueError> {
        let (_, now) = self.now()?;
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, \
             error = CASE WHEN $1 = 'succeeded' THEN NULL ELSE COALESCE($2, error) END, \
             finished_at = $3, updated_at = $3, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $4 AND lease_owner = $5 AND attempts = $6 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(&now)
        .bind(lease.job_id.to_string())
        .bind(&lease.owner)
        .bind(lease.attempt)
        .execute(self.db.pool())
        .await?;
        if updated.rows_affected() == 0 {
            return Err(QueueError::LeaseLost(lease.job_id));
        }
        Ok(())
    }

    /// Asks to cancel: a queued job is cancelled at once, a running one at its next heartbeat.
    pub async fn request_cancel(&self, id: Uuid) -> Result<JobState, QueueError> {
        let mut conn = self.db.pool().acquire().await?;
        self.request_cancel_in(&mut conn, id).await
    }

    /// [`JobQueue::request_cancel`] in the caller's transaction.
    pub async fn request_cancel_in(
        &self,
        conn: &mut AnyConnection,
        id: Uuid,
    ) -> Result<JobState, QueueError> {
        let (_, now) = self.now()?;
        let cancelled = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1 \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(&now)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
        if cancelled.rows_affected() == 1 {
            return Ok(JobState::Cancelled);
        }
        let flagged = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND state = 'running'",
        )
        .bind(&now)
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
        if flagged.rows_affected() == 1 {
            return Ok(JobState::Running);
        }
        let job = self.get(id).await?;
        Err(QueueError::WrongState {
            id,
            state: job.state.as_str(),
            operation: "cancel",
            needed: "queued or running",
        })
    }

    /// Queues a failed or cancelled job again with a fresh budget of attempts.
    pub async fn retry(&self, id: Uuid) -> Result<Job, QueueError> {
        let mut conn = self.db.pool().acquire().await?;
        self.retry_in(&mut conn, id).await
    }

    /// [`JobQueue::retry`] in the caller's transaction.
    pub async fn retry_in(&self, conn: &mut AnyConnection, id: Uuid) -> Result<Job, QueueError> {
        let (_, now) = self.now()?;
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_after = $1, cancel_requested = 0, \
             finished_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state IN ('failed', 'cancelled') RETURNING {COLUMNS}"
        ))
        .bind(&now)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await;
        match row {
            Ok(Some(row)) => job_from_row(&row),
            Ok(None) => {
                let job = self.get(id).await?;
                Err(QueueError::WrongState {
                    id,
                    state: job.state.as_str(),
                    operation: "retry",
                    needed: "failed or cancelled",
                })
            }
            // Another job of the release was started meanwhile.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let job = self.get(id).await?;
                Err(QueueError::AlreadyActive {
                    release_id: job.release_id,
                    kind: job.kind.as_str(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ends jobs that no runner can take over: leases expired with no attempts left, or with a
    /// cancel request pending. Returns the jobs it ended, so their work can be handed back.
    pub async fn sweep(&self) -> Result<Vec<Job>, QueueError> {
        let (_, now) = self.now()?;
        let cancelled = sqlx::query(&format!(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1, lease_owner = NULL \
             WHERE state = 'running' AND lease_expires_at < $1 AND cancel_requested = 1 \
             RETURNING {COLUMNS}"
        ))
        .bind(&now)
        .fetch_all(self.db.pool())
        .await?;
        let failed = sqlx::query(&format!(
            "UPDATE jobs SET state = 'failed', finished_at = $1, updated_at = $1, lease_owner = NULL, \
             error = COALESCE(error, 'runner stopped and no attempts are left') \
             WHERE state = 'running' AND lease_expires_at < $1 AND attempts >= max_attempts \
             RETURNING {COLUMNS}"
        ))
        .bind(&now)
        .fetch_all(self.db.pool())
        .await?;
        cancelled.iter().chain(&failed).map(job_from_row).collect()
    }

    /// One job.
    pub async fn get(&self, id: Uuid) -> Result<Job, QueueError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?
            .ok_or(QueueError::NotFound(id))?;
        job_from_row(&row)
    }

    /// Jobs, newest first, optionally of one release.
    pub async fn list(&self, release_id: Option<Uuid>) -> Result<Vec<Job>, QueueError> {
        let rows = match release_id {
            Some(release) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE release_id = $1 ORDER BY created_at DESC, id"
                ))
                .bind(release.to_string())
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM jobs ORDER BY created_at DESC, id"
                ))
                .fetch_all(self.db.pool())
                .await?
            }
        };
        rows.iter().map(job_from_row).collect()
    }

    /// Appends a line to the job's log. Lines are Steward's own messages (ids, counts, error
    /// texts that name files and lines), never row values.
    pub async fn log(&self, job_id: Uuid, line: &str) -> Result<(), QueueError> {
        let mut conn = self.db.pool().acquire().await?;
        self.log_in(&mut conn, job_id, line).await
    }

    /// [`JobQueue::log`] in the caller's transaction.
    pub async fn log_in(
        &self,
        conn: &mut AnyConnection,
        job_id: Uuid,
        line: &str,
    ) -> Result<(), QueueError> {
        let (_, now) = self.now()?;
        sqlx::query(
            "INSERT INTO job_log (job_id, seq, at, line) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3 FROM job_log WHERE job_id = $1",
        )
        .bind(job_id.to_string())
        .bind(&now)
        .bind(line)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The job's log lines, in order.
    pub async fn log_lines(&self, job_id: Uuid) -> Result<Vec<String>, QueueError> {
        let rows = sqlx::query("SELECT line FROM job_log WHERE job_id = $1 ORDER BY seq")
            .bind(job_id.to_string())
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("line").map_err(QueueError::from))
            .collect()
    }
}

fn parse_uuid(text: &str) -> Result<Uuid, QueueError> {
    Uuid::parse_str(text).map_err(|_| QueueError::Corrupt(format!("bad uuid {text:?}")))
}

fn job_from_row(row: &AnyRow) -> Result<Job, QueueError> {
    let time = |name: &str| -> Result<OffsetDateTime, QueueError> {
        Ok(timestamp::decode(&row.try_get::<String, _>(name)?)?)
    };
    let opt_time = |name: &str| -> Result<Option<OffsetDateTime>, QueueError> {
        Ok(timestamp::decode_opt(
            row.try_get::<Option<String>, _>(name)?,
        )?)
    };
    Ok(Job {
        id: parse_uuid(&row.try_get::<String, _>("id")?)?,
        kind: JobKind::parse(&row.try_get::<String, _>("kind")?)?,
        release_id: parse_uuid(&row.try_get::<String, _>("release_id")?)?,
        state: JobState::parse(&row.try_get::<String, _>("state")?)?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        run_after: time("run_after")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: opt_time("lease_expires_at")?,
        heartbeat_at: opt_time("heartbeat_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        progress: row.try_get("progress")?,
        error: row.try_get("error")?,
        created_at: time("created_at")?,
        finished_at: opt_time("finished_at")?,
    })
}
