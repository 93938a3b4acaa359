//! `steward synth` and `steward optout import`.

use std::path::Path;

use crate::app::{connect_database, StartupError};
use crate::audit::{AccessEvent, Action, Actor, AuditLog, Outcome, Target};
use crate::clock::SharedClock;
use crate::config::{PolicySecret, Settings};
use crate::db::optout;
use crate::policy::{parse_import_csv, OptOutHasher};

/// Why a policy command failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyCommandError {
    /// Steward's database or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The synthetic generator failed.
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
    /// The import file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The import file is malformed; nothing was imported.
    #[error("{0}; nothing was imported")]
    OptOut(#[from] crate::policy::OptOutError),
    /// The registry could not be written; nothing was imported.
    #[error("{0}; nothing was imported")]
    Registry(#[from] optout::OptOutStoreError),
    /// The import could not be logged.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Writes synthetic source files and prints what was written.
pub fn synth(out: &Path, rows: u64, seed: u64) -> Result<(), PolicyCommandError> {
    let report = crate::synth::generate(out, rows, seed)?;
    for file in &report.files {
        println!(
            "{:<40} {:>10} rows {:>14} bytes",
            file.path.display(),
            file.rows,
            file.bytes
        );
    }
    println!(
        "{} members, {} of them in optout.csv",
        report.members, report.opted_out_members
    );
    Ok(())
}

/// Imports a CSV of SSNs and/or member ids as keyed hashes: all rows or none.
pub async fn optout_import(
    settings: &Settings,
    clock: SharedClock,
    file: &Path,
) -> Result<(), PolicyCommandError> {
    let db = connect_database(settings).await?;
    db.check_schema().await.map_err(StartupError::from)?;
    let secret = settings
        .policy_secret(PolicySecret::OptOut)
        .map_err(StartupError::from)?;
    let hasher = OptOutHasher::new(secrecy::ExposeSecret::expose_secret(&secret).as_bytes())?;
    let reader = std::fs::File::open(file).map_err(|source| PolicyCommandError::Open {
        path: file.display().to_string(),
        source,
    })?;
    // Parse the whole file before writing anything: a bad line changes nothing.
    let keys = parse_import_csv(std::io::BufReader::new(reader), &hasher)?;
    let now = clock.now();
    let import_id = uuid::Uuid::new_v4().to_string();
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    // The keys and the import's event commit together.
    let mut tx = db
        .begin_write()
        .await
        .map_err(|e| StartupError::from(crate::db::DbError::from(e)))?;
    let added = optout::insert_keys(&mut tx, &keys, &at, &import_id).await?;
    let in_file = keys.len() as u64;
    AuditLog::new(db.clone(), clock)
        .record(
            &mut tx,
            &AccessEvent::new(
                Actor::System,
                Action::OptOutImported,
                Target::OptOutRegistry { in_file, added },
                Outcome::Succeeded,
            ),
        )
        .await?;
    tx.commit()
        .await
        .map_err(|e| StartupError::from(crate::db::DbError::from(e)))?;
    println!("imported {in_file} opt-out entries ({added} new); only keyed hashes are stored");
    db.close().await;
    Ok(())
}
