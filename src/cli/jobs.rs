//! `steward jobs ...`: start, list, show, cancel and retry extract jobs from the server's
//! shell, through the same `JobService` the API uses. The CLI acts as `system`, like
//! `steward release`, and its changes are access-log events with the system as actor.

use std::sync::Arc;

use clap::Subcommand;

use crate::app::{build_release_service, connect_database, load_policy, StartupError};
use crate::audit::{AuditLog, Client};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::domain::release::ReleaseId;
use crate::jobs::{Cancelled, Job, JobId, JobQueue, JobService, JobServiceError, JobState};
use crate::release::Caller;

/// `steward jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Start the extract of a release in dua_executed (the release moves to extracting).
    #[command(
        after_help = "Example:\n  steward jobs start --release 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10"
    )]
    Start {
        /// The release id.
        #[arg(long)]
        release: ReleaseId,
    },
    /// List jobs, newest first, optionally of one release.
    #[command(
        after_help = "Examples:\n  steward jobs list\n  steward jobs list --release 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --json"
    )]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only jobs of this release.
        #[arg(long)]
        release: Option<ReleaseId>,
    },
    /// Show one job: state, attempts, progress, error, times and its log.
    #[command(
        after_help = "Examples:\n  steward jobs show 0b8d7c4e-5f0a-4e0e-9f7e-8a1d2c3b4a50\n  steward jobs show 0b8d7c4e-5f0a-4e0e-9f7e-8a1d2c3b4a50 --json | jq .state"
    )]
    Show {
        /// The job id.
        id: JobId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow a job with a progress bar (bytes of the source being read against its size) until
    /// it ends.
    #[command(
        after_help = "Example:\n  steward jobs watch 0b8d7c4e-5f0a-4e0e-9f7e-8a1d2c3b4a50\n\nExit codes:\n  0  the job succeeded\n  1  it failed or was cancelled, or it could not be read"
    )]
    Watch {
        /// The job id.
        id: JobId,
    },
    /// Cancel a queued job now, or ask a running job to stop at its next heartbeat.
    #[command(after_help = "Example:\n  steward jobs cancel 0b8d7c4e-5f0a-4e0e-9f7e-8a1d2c3b4a50")]
    Cancel {
        /// The job id.
        id: JobId,
    },
    /// Queue a failed or cancelled job again (its release must be back in dua_executed).
    #[command(after_help = "Example:\n  steward jobs retry 0b8d7c4e-5f0a-4e0e-9f7e-8a1d2c3b4a50")]
    Retry {
        /// The job id.
        id: JobId,
    },
}

/// Why a jobs command failed.
#[derive(Debug, thiserror::Error)]
pub enum JobsCommandError {
    /// Steward's database, keys or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The job service refused or failed.
    #[error(transparent)]
    Jobs(#[from] JobServiceError),
    /// The watched job did not succeed.
    #[error("job {0} ended {1}")]
    Ended(JobId, &'static str),
}

/// Runs a jobs command against the configured (already migrated) database.
pub async fn run(settings: &Settings, command: JobsCommand) -> Result<(), JobsCommandError> {
    let db = connect_database(settings).await?;
    db.check_schema().await.map_err(StartupError::from)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let audit = AuditLog::new(db.clone(), clock.clone());
    let (_, releases) = build_release_service(
        settings,
        &db,
        &audit,
        &clock,
        &Arc::new(load_policy(settings)?),
    )?;
    let queue = JobQueue::new(db.clone(), clock, settings.queue_config());
    let service = JobService::new(queue, releases, audit);
    let result = execute(&service, command).await;
    db.close().await;
    result
}

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A job as `--json` prints it: names and RFC 3339 times.
fn job_json(job: &Job, log: Option<&[String]>) -> serde_json::Value {
    let progress: serde_json::Value =
        serde_json::from_str(&job.progress).unwrap_or(serde_json::Value::Null);
    let mut value = serde_json::json!({
        "id": job.id,
        "kind": job.kind.as_str(),
        "release_id": job.release_id,
        "state": job.state.as_str(),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_after": time_text(job.run_after),
        "lease_owner": job.lease_owner,
        "heartbeat_at": job.heartbeat_at.map(time_text),
        "cancel_requested": job.cancel_requested,
        "progress": progress,
        "error": job.error,
        "created_at": time_text(job.created_at),
        "finished_at": job.finished_at.map(time_text),
    });
    if let Some(log) = log {
        value["log"] = serde_json::json!(log);
    }
    value
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A job's progress in words: rows written, and the current source read against its size.
fn progress_text(progress: &str) -> String {
    let progress: serde_json::Value = serde_json::from_str(progress).unwrap_or_default();
    let number = |key: &str| progress[key].as_u64();
    match (number("rows"), number("source_read"), number("source_size")) {
        (Some(rows), Some(read), Some(size)) if size > 0 => format!(
            "{rows} rows; source {read} of {size} bytes ({}%)",
            read.min(size) * 100 / size
        ),
        (Some(rows), _, _) => format!("{rows} rows"),
        _ => "-".to_owned(),
    }
}

fn summary(job: &Job) -> String {
    format!(
        "{}  {:<8} {:<10} {}/{}  {}  {}",
        job.id,
        job.kind.as_str(),
        job.state.as_str(),
        job.attempts,
        job.max_attempts,
        job.release_id,
        time_text(job.created_at)
    )
}

async fn execute(service: &JobService, command: JobsCommand) -> Result<(), JobsCommandError> {
    // The shell has no peer address or user agent.
    let client = Client::default();
    match command {
        JobsCommand::Start { release } => {
            let job = service.start(Caller::System, release, &client).await?;
            println!("queued extract job {} for release {release}", job.id);
        }
        JobsCommand::List {
            release,
            json: true,
        } => {
            let jobs: Vec<serde_json::Value> = service
                .list(Caller::System, release)
                .await?
                .iter()
                .map(|job| job_json(job, None))
                .collect();
            print_json(&serde_json::Value::Array(jobs));
        }
        JobsCommand::List { release, .. } => {
            println!(
                "{:<36}  {:<8} {:<10} {:<4}  {:<36}  created",
                "id", "kind", "state", "try", "release"
            );
            for job in service.list(Caller::System, release).await? {
                println!("{}", summary(&job));
            }
        }
        JobsCommand::Show { id, json: true } => {
            let detail = service.show(Caller::System, id).await?;
            print_json(&job_json(&detail.job, Some(&detail.log)));
        }
        JobsCommand::Show { id, .. } => {
            let detail = service.show(Caller::System, id).await?;
            let job = &detail.job;
            println!("{}", summary(job));
            println!("state:       {}", job.state.as_str());
            println!("attempts:    {} of {}", job.attempts, job.max_attempts);
            println!("progress:    {}", progress_text(&job.progress));
            println!("error:       {}", job.error.as_deref().unwrap_or("-"));
            println!("lease owner: {}", job.lease_owner.as_deref().unwrap_or("-"));
            println!(
                "heartbeat:   {}",
                job.heartbeat_at.map_or("-".to_owned(), time_text)
            );
            println!(
                "finished:    {}",
                job.finished_at.map_or("-".to_owned(), time_text)
            );
            println!("log:");
            for line in &detail.log {
                println!("  {line}");
            }
        }
        JobsCommand::Watch { id } => watch(service, id).await?,
        JobsCommand::Cancel { id } => {
            let (_, outcome) = service.cancel(Caller::System, id, &client).await?;
            match outcome {
                Cancelled::Now => println!("job {id} cancelled"),
                Cancelled::Requested => {
                    println!("job {id} is running; its runner stops it at the next heartbeat")
                }
            }
        }
        JobsCommand::Retry { id } => {
            service.retry(Caller::System, id, &client).await?;
            println!("job {id} queued again");
        }
    }
    Ok(())
}

/// Polls the job and draws its progress until it reaches a final state.
async fn watch(service: &JobService, id: JobId) -> Result<(), JobsCommandError> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:40}] {percent:>3}% {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let job = service.show(Caller::System, id).await?.job;
        let progress: serde_json::Value =
            serde_json::from_str(&job.progress).unwrap_or(serde_json::Value::Null);
        let number = |key: &str| progress[key].as_u64().unwrap_or(0);
        bar.set_length(number("source_size"));
        bar.set_position(number("source_read").min(number("source_size")));
        bar.set_message(format!("{}, {} rows", job.state.as_str(), number("rows")));
        match job.state {
            JobState::Succeeded => {
                bar.finish_with_message(format!("succeeded, {} rows", number("rows")));
                return Ok(());
            }
            JobState::Failed | JobState::Cancelled => {
                bar.abandon_with_message(format!(
                    "{}: {}",
                    job.state.as_str(),
                    job.error.as_deref().unwrap_or("-")
                ));
                return Err(JobsCommandError::Ended(id, job.state.as_str()));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}
