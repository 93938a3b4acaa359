//! `steward release ...`: read releases, export a signed approval letter, run the scheduled
//! release work (DUA expiry, demands on expiry, erase jobs, reminders), demand destruction and
//! follow it, from the server's shell, through the same services the API uses.
//!
//! The CLI acts as `system`. Decisions that belong to a person (submit, review, approve, the
//! subcommittee record, the DUA, the recipient's attestation) are made over the API by a
//! signed-in user with a second factor, so separation of duties can be checked against who they
//! are; the CLI performs what the server itself may do (expiry, and destruction demanded at the
//! agency's shell, logged as the system's).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;

use crate::app::{build_state, StartupError};
use crate::audit::Client;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::destruction::{DemandRequest, DestructionError};
use crate::domain::ids::OrgId;
use crate::domain::level::Level;
use crate::domain::release::{ReleaseId, ReleaseStatus};
use crate::release::{Caller, ListFilter, ReleaseRecord, ReleaseService, ServiceError};
use crate::state::AppState;

const ROUTE: &str = "steward release";

fn yes(done: bool) -> &'static str {
    if done {
        "yes"
    } else {
        "no"
    }
}

/// `steward release ...`
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// List releases, newest first, optionally filtered.
    #[command(
        after_help = "Examples:\n  steward release list\n  steward release list --state in_review --level III\n  steward release list --json | jq -r '.[].id'"
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
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one release: request, approved elements, subcommittee decision, DUA and history.
    #[command(
        after_help = "Examples:\n  steward release show 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10\n  steward release show 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --json"
    )]
    Show {
        /// The release id.
        id: ReleaseId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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
    /// Run the scheduled release work now (it also runs inside `steward serve`), as `system`:
    /// DUA expiry, destruction demanded on expiry where configured, erase jobs queued again,
    /// reminders for overdue destruction.
    #[command(after_help = "Example:\n  steward release expire")]
    Expire,
    /// Demand destruction of a release: all access is revoked at once, the erase job is queued,
    /// and the DUA's responsible person must attest destruction by the deadline.
    #[command(
        after_help = "Example:\n  steward release destroy 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --reason \"Study closed\" --deadline 2027-01-31\n\nThen: `steward release destruction ID` to follow it, `steward release certificate ID --out FILE`\nonce the server's copies are erased."
    )]
    Destroy {
        /// The release id.
        id: ReleaseId,
        /// Why (kept with the demand; the access log records that it was made).
        #[arg(long)]
        reason: String,
        /// The last day for the recipient's attestation, YYYY-MM-DD.
        #[arg(long, value_parser = parse_date)]
        deadline: time::Date,
    },
    /// Show a destruction demand: the erase job's progress, the attestation, and the users the
    /// access log shows holding data.
    #[command(
        after_help = "Examples:\n  steward release destruction 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10\n  steward release destruction 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --json"
    )]
    Destruction {
        /// The release id.
        id: ReleaseId,
        /// Print JSON (as the API shows it) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the signed destruction certificate (JSON, and the PDF beside it with `.pdf`).
    #[command(
        after_help = "Example:\n  steward release certificate 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --out destruction.json\n\nCheck it anywhere with `steward verify certificate destruction.json --key PUBLIC_KEY`."
    )]
    Certificate {
        /// The release id.
        id: ReleaseId,
        /// Where to write the JSON file; the PDF goes beside it with the extension `.pdf`.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn parse_date(text: &str) -> Result<time::Date, String> {
    time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| format!("expected YYYY-MM-DD: {e}"))
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
    /// The destruction service refused or failed.
    #[error(transparent)]
    Destruction(#[from] DestructionError),
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
    let clock: SharedClock = Arc::new(SystemClock);
    let state = build_state(settings.clone(), clock.clone()).await?;
    let result = execute(&state, &clock, command).await;
    state.db.close().await;
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

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A release as `--json` prints it: names, ids and RFC 3339 times.
fn release_json(
    record: &ReleaseRecord,
    history: Option<&[crate::db::releases::HistoryRow]>,
) -> serde_json::Value {
    let row = &record.row;
    let mut value = serde_json::json!({
        "id": row.id.to_string(),
        "status": row.status.as_str(),
        "level": row.level.as_str(),
        "organization_id": row.org_id.to_string(),
        "requested_by": row.requested_by.to_string(),
        "datasets": record.request.datasets.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        "aggregate": record.request.aggregate.is_some(),
        "approved_elements": record.approved.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "approved_at": row.approved_at.map(rfc3339),
        "dua": record.dua.as_ref().map(|d| serde_json::json!({
            "number": d.number,
            "version": d.version,
            "effective": d.effective,
            "expiry": d.expiry,
            "users": d.users.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
            "responsible": d.responsible.to_string(),
            "download_limit": d.download_limit,
            "destruction_days": d.destruction_days,
        })),
        "allowed_next": row.status.allowed_transitions().iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    });
    if let Some(history) = history {
        value["history"] = history
            .iter()
            .map(|h| {
                serde_json::json!({
                    "entry": h.entry,
                    "at": rfc3339(h.at),
                    "kind": h.kind,
                    "from": h.from_status.as_str(),
                    "to": h.to_status.as_str(),
                    "actor": h.actor,
                    "reason": h.reason,
                })
            })
            .collect();
    }
    value
}

async fn execute(
    state: &AppState,
    clock: &SharedClock,
    command: ReleaseCommand,
) -> Result<(), ReleaseCommandError> {
    let service = &state.releases;
    let client = Client::default();
    match command {
        ReleaseCommand::List {
            states,
            org,
            level,
            json,
        } => {
            let filter = ListFilter {
                statuses: states,
                org: org.map(OrgId),
                level,
            };
            if json {
                let records = service.list(Caller::System, &filter).await?;
                let list: Vec<serde_json::Value> =
                    records.iter().map(|r| release_json(r, None)).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
                return Ok(());
            }
            println!(
                "{:<36}  {:<20} {:<3} {:<36}  dua",
                "id", "status", "lvl", "organization"
            );
            for record in service.list(Caller::System, &filter).await? {
                println!("{}", summary(&record));
            }
        }
        ReleaseCommand::Show { id, json } => {
            let record = service.record(id).await?.ok_or(ServiceError::NotFound)?;
            if json {
                let history = service.history(id).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&release_json(&record, Some(&history)))
                        .unwrap_or_default()
                );
                return Ok(());
            }
            println!("{}", summary(&record));
            println!("requested by:  {}", record.row.requested_by);
            let datasets: Vec<&str> = record.request.datasets.iter().map(|d| d.as_str()).collect();
            println!("datasets:      {}", datasets.join(", "));
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
                    rfc3339(h.at),
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
            let report = state.destruction.tick(clock.now()).await?;
            for (what, ids) in [
                ("expired", &report.expired),
                ("destruction demanded", &report.demanded),
                ("erase job queued again", &report.resumed),
                ("overdue, reminder logged", &report.reminded),
            ] {
                for id in ids {
                    println!("{id}  {what}");
                }
            }
            println!("{} release(s) expired", report.expired.len());
        }
        ReleaseCommand::Destroy {
            id,
            reason,
            deadline,
        } => {
            let request = DemandRequest {
                reason,
                deadline: Some(deadline),
            };
            let demand = state
                .destruction
                .demand(Caller::System, id, request, ROUTE, &client)
                .await?;
            println!(
                "destruction of {id} demanded; attestation due by {}",
                demand.deadline
            );
            println!("all access revoked (revocation {})", demand.revocation);
            println!("the erase job is queued; follow it with `steward release destruction {id}`");
        }
        ReleaseCommand::Destruction { id, json } => {
            let view = state
                .destruction
                .view(Caller::System, id, ROUTE, &client)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
                return Ok(());
            }
            println!("release:        {} ({})", view.release, view.status);
            println!(
                "demanded:       {} by {}",
                view.demanded_at, view.demanded_by
            );
            println!("reason:         {}", view.reason);
            println!(
                "deadline:       {}{}",
                view.deadline,
                if view.overdue { "  OVERDUE" } else { "" }
            );
            println!("plan recorded:  {}", yes(view.planned));
            println!(
                "key erased:     {}",
                view.key_erased_at.as_deref().unwrap_or("no")
            );
            println!("certificate:    {}", yes(view.certificate_issued));
            match (view.attested_by, view.attested_at) {
                (Some(by), Some(at)) => println!("attested:       {at} by {by}"),
                _ => println!("attested:       no"),
            }
            println!("holders (the attestation must cover each):");
            for h in &view.holders {
                println!(
                    "  {}  {} bytes of {} file(s), last {} from {}",
                    h.user,
                    h.bytes_received,
                    h.files.len(),
                    h.last_at,
                    h.client_addrs.join(",")
                );
            }
        }
        ReleaseCommand::Certificate { id, out } => {
            let signed = state
                .destruction
                .certificate(Caller::System, id, ROUTE, &client)
                .await?;
            let pdf_path = out.with_extension("pdf");
            for (path, bytes) in [(&out, signed.to_file()), (&pdf_path, signed.to_pdf())] {
                std::fs::write(path, bytes).map_err(|source| ReleaseCommandError::Write {
                    path: path.clone(),
                    source,
                })?;
                println!("wrote {}", path.display());
            }
            println!("signed by {}", signed.certificate.signer);
        }
    }
    Ok(())
}
