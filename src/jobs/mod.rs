//! Durable jobs: the queue in the database (claim, lease, heartbeat, retry, cancel). The
//! runner that executes extract jobs builds on it.

pub mod queue;

pub use queue::{HeartbeatAck, Job, JobKind, JobQueue, JobState, Lease, QueueConfig, QueueError};
