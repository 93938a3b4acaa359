//! Durable jobs: the queue in the database (claim, lease, heartbeat, retry, cancel) and the
//! runner that claims jobs and hands them to an executor.

pub mod queue;
pub mod runner;
pub mod service;

pub use queue::{HeartbeatAck, Job, JobKind, JobQueue, JobState, Lease, QueueConfig, QueueError};
pub use runner::{ExecutionError, JobExecutor, RunOutcome, Runner, RunnerConfig};
pub use service::{Cancelled, JobDetail, JobId, JobService, JobServiceError};
