//! `steward release ...`: read releases, export a signed approval letter and run the DUA expiry
//! check from the server's shell, through the same `ReleaseService` the API uses.
//!
//! The CLI acts as `system`. Decisions that belong to a person (submit, review, approve, the
//! subcommittee record, the DUA) are made over the API by a signed-in user with a second
//! factor, so separation of duties can be checked against who they are; the CLI only performs
//! what the server itself may do (expiry, and the destruction demand where configured).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;

use crate::app::{build_release_service, connect_database, load_policy, StartupError};
use crate::audit::AuditLog;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::domain::ids::OrgId;
use crate::domain::level::Level;
use crate::domain::release::{ReleaseId, ReleaseStatus};
use crate::release::{Caller, ListFilter, ReleaseRecord, ReleaseService, ServiceError};

/// `steward release ...`
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// List releases, newest first, optionally filtered.
    #[command(
        after_help = "Examples:\n  steward release list\n  steward release list --state in_review --level III"
    )]
    List {
        /// Only releases in this state (repeat for several), e.g. in_review, dua_executed.
        #[arg(long = "state")]
        states: Vec<ReleaseStatus>,
        /// Only releases requested by this organization (its id).
        #[arg(long)]
        org: Option<uuid::Uuid>,
        /// Only releases of this level: I, II or III.
        #[arg(long)]
        level: Option<Level>,
    },
    /// Show one release: request, approved elements, subcommittee decision, DUA and history.
    #[command(
        after_help = "Example:\n  steward release show 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10"
    )]
    Show {
        /// The release id.
        id: ReleaseId,
    },
    /// Write the release's signed approval letter (PDF) to a file and print its signature.
    #[command(
        after_help = "Example:\n  steward release letter 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --out letter.pdf"
    )]
    Letter {
        /// The release id.
        id: ReleaseId,
        /// Where to write the PDF.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the DUA expiry check now (it also runs inside `steward serve`), as `system`.
    #[command(after_help = "Example:\n  steward release expire")]
    Expire,
}

/// Why a release command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseCommandError {
    /// Steward's database, keys or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The release service refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The letter could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs a release command against the configured (already migrated) database.
pub async fn run(settings: &Settings, command: ReleaseCommand) -> Result<(), ReleaseCommandError> {
    let db = connect_database(settings).await?;
    db.check_schema().await.map_err(StartupError::from)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let audit = AuditLog::new(db.clone(), clock.clone());
    let (_, service) = build_release_service(
        settings,
        &db,
        &audit,
        &clock,
        &Arc::new(load_policy(settings)?),
    )?;
    let result = execute(&service, &clock, command).await;
    db.close().await;
    result
}

fn summary(record: &ReleaseRecord) -> String {
    let row = &record.row;
    format!(
        "{}  {:<20} {:<3} {}  {}",
        row.id,
        row.status.as_str(),
        row.level.as_str(),
        row.org_id,
        record.dua.as_ref().map_or("-", |d| d.number.as_str())
    )
}

async fn execute(
    service: &ReleaseService,
    clock: &SharedClock,
    command: ReleaseCommand,
) -> Result<(), ReleaseCommandError> {
    match command {
        ReleaseCommand::List { states, org, level } => {
            let filter = ListFilter {
                statuses: states,
                org: org.map(OrgId),
                level,
            };
            println!(
                "{:<36}  {:<20} {:<3} {:<36}  dua",
                "id", "status", "lvl", "organization"
            );
            for record in service.list(Caller::System, &filter).await? {
                println!("{}", summary(&record));
            }
        }
        ReleaseCommand::Show { id } => {
            let record = service.record(id).await?.ok_or(ServiceError::NotFound)?;
            println!("{}", summary(&record));
            println!("requested by:  {}", record.row.requested_by);
            println!("datasets:      {:?}", record.request.datasets);
            println!("approved:      {}", record.approved.len());
            for element in &record.approved {
                println!("  {element}");
            }
            if let Some(dua) = &record.dua {
                println!(
                    "DUA:           {} v{} {}..{} ({} users)",
                    dua.number,
                    dua.version,
                    dua.effective,
                    dua.expiry,
                    dua.users.len()
                );
            }
            let allowed: Vec<&str> = record
                .row
                .status
                .allowed_transitions()
                .iter()
                .map(|t| t.as_str())
                .collect();
            println!("allowed next:  {}", allowed.join(", "));
            println!("history:");
            for h in service.history(id).await? {
                println!(
                    "  #{} {} {} {} -> {} by {}{}",
                    h.entry,
                    h.at,
                    h.kind,
                    h.from_status,
                    h.to_status,
                    h.actor,
                    h.reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
            }
        }
        ReleaseCommand::Letter { id, out } => {
            let letter = service.letter(id).await?.ok_or(ServiceError::NotFound)?;
            let pdf = ReleaseService::letter_pdf(&letter)?;
            std::fs::write(&out, pdf).map_err(|source| ReleaseCommandError::Write {
                path: out.clone(),
                source,
            })?;
            println!("wrote {}", out.display());
            println!("signature (ed25519, hex):  {}", letter.signature);
            println!("public key (hex):          {}", letter.public_key);
        }
        ReleaseCommand::Expire => {
            let done = service.expire_due(clock.now()).await?;
            for expired in &done {
                println!("{}  {}", expired.id, expired.status);
            }
            println!("{} release(s) expired", done.len());
        }
    }
    Ok(())
}
