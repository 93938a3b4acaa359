//! `steward revoke ...`: the operator's shell stops access for a user, an organization, a
//! release or one file, lists revocations and lifts one, through the same `DeliveryService`
//! as `POST /api/v1/revocations`. It acts as the system. On PostgreSQL every server replica
//! cuts the streams it covers at once (NOTIFY); on SQLite the server's own periodic re-check
//! (`downloads.recheck_secs`) does.

use std::sync::Arc;

use clap::Subcommand;
use uuid::Uuid;

use crate::app::{build_state, StartupError};
use crate::audit::Client;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::db::downloads::{RevocationRow, RevocationScope};
use crate::delivery::{DeliveryError, RevocationRequest};
use crate::release::Caller;

const ROUTE: &str = "steward revoke";

/// `steward revoke ...`
#[derive(Debug, Subcommand)]
pub enum RevokeCommand {
    /// Stop every download by one user.
    #[command(
        after_help = "Example:\n  steward revoke user 3f2b8c1e-9a4d-4c1e-8b7a-0d9e6f5a4b3c --reason \"Left the project\""
    )]
    User {
        /// The user id.
        id: Uuid,
        /// Why (kept with the revocation; the access log records that it was made).
        #[arg(long)]
        reason: String,
    },
    /// Stop every download by anyone of one organization.
    #[command(
        after_help = "Example:\n  steward revoke organization 7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f --reason \"Breach reported\""
    )]
    Organization {
        /// The organization id.
        id: Uuid,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Stop every download of one release's files.
    #[command(
        after_help = "Example:\n  steward revoke release 6f1c2a9e-0b7d-4a55-9d43-2f4e1f0c9a10 --reason \"DUA breach\""
    )]
    Release {
        /// The release id.
        id: Uuid,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Stop every download of one file.
    #[command(
        after_help = "Example:\n  steward revoke file 0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d --reason \"Wrong file\""
    )]
    File {
        /// The file id (from `GET /api/v1/releases/{id}/files`).
        id: Uuid,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List revocations, newest first.
    #[command(after_help = "Examples:\n  steward revoke list\n  steward revoke list --json")]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift a revocation: access is allowed again from the commit on.
    #[command(after_help = "Example:\n  steward revoke lift 5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c")]
    Lift {
        /// The revocation id.
        id: Uuid,
    },
}

/// Why a revoke command failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeCommandError {
    /// Steward's database, keys or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// Delivery refused or failed.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// Runs a revoke command against the configured database.
pub async fn run(settings: &Settings, command: RevokeCommand) -> Result<(), RevokeCommandError> {
    let state = build_state(settings.clone(), Arc::new(SystemClock)).await?;
    let delivery = &state.delivery;
    let client = Client::default();
    let revoke = |scope: RevocationScope, reason: String| RevocationRequest { scope, reason };
    let request = match command {
        RevokeCommand::User { id, reason } => revoke(RevocationScope::User(id), reason),
        RevokeCommand::Organization { id, reason } => {
            revoke(RevocationScope::Organization(id), reason)
        }
        RevokeCommand::Release { id, reason } => revoke(RevocationScope::Release(id), reason),
        RevokeCommand::File { id, reason } => revoke(RevocationScope::File(id), reason),
        RevokeCommand::List { json: true } => {
            let rows = delivery.revocations(Caller::System, ROUTE, &client).await?;
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "id": row.id,
                        "scope": row.scope.kind(),
                        "of": row.scope.id().to_string(),
                        "reason": row.reason,
                        "created_by": row.created_by,
                        "created_at": time_text(row.created_at),
                        "lifted_by": row.lifted_by,
                        "lifted_at": row.lifted_at.map(time_text),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
            return Ok(());
        }
        RevokeCommand::List { .. } => {
            println!(
                "{:<36}  {:<12}  {:<36}  {:<20}  lifted",
                "id", "scope", "of", "created"
            );
            for row in delivery.revocations(Caller::System, ROUTE, &client).await? {
                println!("{}", summary(&row));
            }
            return Ok(());
        }
        RevokeCommand::Lift { id } => {
            let row = delivery.lift(Caller::System, id, ROUTE, &client).await?;
            println!("lifted {}", summary(&row));
            return Ok(());
        }
    };
    let row = delivery
        .revoke(Caller::System, request, ROUTE, &client)
        .await?;
    println!("revoked {}", summary(&row));
    state.db.close().await;
    Ok(())
}

fn time_text(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn summary(row: &RevocationRow) -> String {
    format!(
        "{}  {:<12}  {}  {:<20}  {}",
        row.id,
        row.scope.kind(),
        row.scope.id(),
        time_text(row.created_at),
        row.lifted_at.map_or("-".to_owned(), time_text)
    )
}
