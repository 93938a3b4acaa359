//! The durable queue on both databases: one claim per job, lease takeover and fencing,
//! back-off, attempts, cancel, retry, duplicate starts.

use std::sync::Arc;
use std::time::Duration;

use steward::clock::{Clock, ManualClock};
use steward::db::{ConnectOptions, Database};
use steward::jobs::{JobKind, JobQueue, JobState, QueueConfig, QueueError};
use uuid::Uuid;

use crate::helpers::{Db, TestDatabase};
use crate::on_both_databases;

on_both_databases!(
    concurrent_runners_claim_a_job_once,
    expired_lease_is_taken_over_and_old_runner_is_fenced,
    failures_back_off_then_fail_for_good,
    cancel_and_retry,
    a_release_runs_one_job_at_a_time,
);

struct Harness {
    queue: JobQueue,
    clock: Arc<ManualClock>,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

const CONFIG: QueueConfig = QueueConfig {
    lease: Duration::from_secs(30),
    max_attempts: 3,
    backoff_base: Duration::from_secs(10),
    backoff_max: Duration::from_secs(60),
};

async fn harness(db: Db) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDatabase::create(db, dir.path()).await;
    let options = ConnectOptions {
        max_connections: 5,
        sqlite_busy_timeout: Duration::from_secs(5),
        password: None,
    };
    let database = Database::connect(&test_db.url, &options).await.unwrap();
    database.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::new(
        time::macros::datetime!(2026-03-01 12:00 UTC),
    ));
    Harness {
        queue: JobQueue::new(database, clock.clone(), CONFIG),
        clock,
        _db: test_db,
        _dir: dir,
    }
}

async fn concurrent_runners_claim_a_job_once(db: Db) {
    let h = harness(db).await;
    let job = h
        .queue
        .enqueue(JobKind::Extract, Uuid::new_v4())
        .await
        .unwrap();
    let mut claims = Vec::new();
    for runner in 0..6 {
        let queue = h.queue.clone();
        claims.push(tokio::spawn(async move {
            queue.claim(&format!("runner-{runner}")).await.unwrap()
        }));
    }
    let mut winners = Vec::new();
    for claim in claims {
        if let Some((claimed, lease)) = claim.await.unwrap() {
            winners.push((claimed, lease));
        }
    }
    assert_eq!(winners.len(), 1, "exactly one runner gets the job");
    let (claimed, lease) = &winners[0];
    assert_eq!(claimed.id, job.id);
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(lease.attempt, 1);
    h.queue.succeed(lease).await.unwrap();
    assert_eq!(
        h.queue.get(job.id).await.unwrap().state,
        JobState::Succeeded
    );
    assert!(h.queue.claim("late").await.unwrap().is_none());
}

async fn expired_lease_is_taken_over_and_old_runner_is_fenced(db: Db) {
    let h = harness(db).await;
    let job = h
        .queue
        .enqueue(JobKind::Extract, Uuid::new_v4())
        .await
        .unwrap();
    let (_, first) = h.queue.claim("runner-a").await.unwrap().unwrap();
    // Within the lease nobody else can take it; heartbeats keep it alive.
    h.clock.advance(time::Duration::seconds(20));
    assert!(h.queue.claim("runner-b").await.unwrap().is_none());
    h.queue.heartbeat(&first, r#"{"rows":10}"#).await.unwrap();
    h.clock.advance(time::Duration::seconds(20));
    assert!(
        h.queue.claim("runner-b").await.unwrap().is_none(),
        "the heartbeat renewed the lease"
    );
    // runner-a stalls past its lease: runner-b takes the job over.
    h.clock.advance(time::Duration::seconds(31));
    let (taken, second) = h.queue.claim("runner-b").await.unwrap().expect("takeover");
    assert_eq!(taken.id, job.id);
    assert_eq!(second.attempt, 2);
    // The stalled runner can no longer heartbeat, succeed or fail the job.
    assert!(matches!(
        h.queue.heartbeat(&first, "{}").await,
        Err(QueueError::LeaseLost(_))
    ));
    assert!(matches!(
        h.queue.succeed(&first).await,
        Err(QueueError::LeaseLost(_))
    ));
    assert!(matches!(
        h.queue.fail(&first, "late", false).await,
        Err(QueueError::LeaseLost(_))
    ));
    h.queue.succeed(&second).await.unwrap();
    let done = h.queue.get(job.id).await.unwrap();
    assert_eq!((done.state, done.attempts), (JobState::Succeeded, 2));
    assert_eq!(done.progress, r#"{"rows":10}"#);
}

async fn failures_back_off_then_fail_for_good(db: Db) {
    let h = harness(db).await;
    let job = h
        .queue
        .enqueue(JobKind::Extract, Uuid::new_v4())
        .await
        .unwrap();
    for attempt in 1..=3i64 {
        let (_, lease) = h.queue.claim("runner").await.unwrap().expect("claimable");
        assert_eq!(lease.attempt, attempt);
        let state = h
            .queue
            .fail(&lease, "source missing: /data/x.csv", false)
            .await
            .unwrap();
        if attempt < 3 {
            assert_eq!(state, JobState::Queued);
            let wait = h.queue.backoff(attempt);
            assert_eq!(wait, Duration::from_secs(10 * 2u64.pow(attempt as u32 - 1)));
            // Not before the back-off has passed.
            h.clock
                .advance(time::Duration::try_from(wait).unwrap() - time::Duration::seconds(1));
            assert!(h.queue.claim("runner").await.unwrap().is_none());
            h.clock.advance(time::Duration::seconds(1));
        } else {
            assert_eq!(state, JobState::Failed);
        }
    }
    let failed = h.queue.get(job.id).await.unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error.as_deref(), Some("source missing: /data/x.csv"));
    assert!(failed.finished_at.is_some());
    h.clock.advance(time::Duration::hours(1));
    assert!(
        h.queue.claim("runner").await.unwrap().is_none(),
        "no attempts left"
    );
    assert_eq!(h.queue.backoff(30), Duration::from_secs(60), "capped");
}

async fn cancel_and_retry(db: Db) {
    let h = harness(db).await;
    // A queued job is cancelled at once.
    let queued = h
        .queue
        .enqueue(JobKind::Extract, Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(
        h.queue.request_cancel(queued.id).await.unwrap(),
        JobState::Cancelled
    );
    assert!(h.queue.claim("runner").await.unwrap().is_none());
    // A running job learns of it at its next heartbeat, then acknowledges.
    let running = h
        .queue
        .enqueue(JobKind::Extract, Uuid::new_v4())
        .await
        .unwrap();
    let (_, lease) = h.queue.claim("runner").await.unwrap().unwrap();
    assert_eq!(
        h.queue.request_cancel(running.id).await.unwrap(),
        JobState::Running
    );
    assert!(
        h.queue
            .heartbeat(&lease, "{}")
            .await
            .unwrap()
            .cancel_requested
    );
    h.queue.acknowledge_cancel(&lease).await.unwrap();
    assert_eq!(
        h.queue.get(running.id).await.unwrap().state,
        JobState::Cancelled
    );
    // Cancelling a finished job is refused, naming its state.
    let err = h.queue.request_cancel(running.id).await.unwrap_err();
    assert!(err.to_string().contains("is cancelled"), "{err}");
    // Retry gives a fresh budget.
    let retried = h.queue.retry(running.id).await.unwrap();
    assert_eq!((retried.state, retried.attempts), (JobState::Queued, 0));
    let (_, lease) = h.queue.claim("runner").await.unwrap().unwrap();
    assert_eq!(lease.attempt, 1);
    let err = h.queue.retry(running.id).await.unwrap_err();
    assert!(matches!(err, QueueError::WrongState { .. }), "{err}");
    // A running job whose runner died with a cancel pending is ended by the sweep.
    assert_eq!(
        h.queue.request_cancel(running.id).await.unwrap(),
        JobState::Running
    );
    h.clock.advance(time::Duration::minutes(5));
    assert_eq!(h.queue.sweep().await.unwrap().len(), 1);
    assert_eq!(
        h.queue.get(running.id).await.unwrap().state,
        JobState::Cancelled
    );
    let _ = h.clock.now();
}

async fn a_release_runs_one_job_at_a_time(db: Db) {
    let h = harness(db).await;
    let release = Uuid::new_v4();
    let first = h.queue.enqueue(JobKind::Extract, release).await.unwrap();
    let err = h
        .queue
        .enqueue(JobKind::Extract, release)
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::AlreadyActive { .. }), "{err}");
    assert_eq!(h.queue.list(Some(release)).await.unwrap().len(), 1);
    let (_, lease) = h.queue.claim("runner").await.unwrap().unwrap();
    assert!(
        h.queue.enqueue(JobKind::Extract, release).await.is_err(),
        "still refused while running"
    );
    h.queue
        .log(first.id, "dataset med_claim: 10 rows")
        .await
        .unwrap();
    h.queue.log(first.id, "done").await.unwrap();
    assert_eq!(
        h.queue.log_lines(first.id).await.unwrap(),
        ["dataset med_claim: 10 rows", "done"]
    );
    h.queue.succeed(&lease).await.unwrap();
    h.queue
        .enqueue(JobKind::Extract, release)
        .await
        .expect("a new run after the first ended");
}
