//! `steward audit ...`: verify the access log, check a receipt offline, print the log's public
//! key, export records.
//!
//! Exit codes of `verify` and `verify-proof`: 0 the log (or receipt) checks out; 1 it does not
//! (the first problem is printed, with its position); 2 the check could not run (bad arguments,
//! unreadable file, wrong or malformed key, unreachable database).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use crate::app::{connect_database, StartupError};
use crate::audit::checkpoint::{self, CheckpointSigner};
use crate::audit::proof;
use crate::audit::review::{self, RawFilter};
use crate::audit::verify::{self, DatabaseLog, Expectations};
use crate::audit::{AccessEvent, Action, Actor, AuditLog, Outcome, Reason, Target};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::crypto::signing::ServerSigner;

/// `steward audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain and the Merkle tree from every record, check every stored tree hash,
    /// every checkpoint's signature and root (stored, exported and trusted), and events left
    /// without a position; print the first problem with its position.
    #[command(
        after_help = "Exit codes: 0 the log verifies; 1 a problem was found (printed with \
its position); 2 the check could not run.\n\nExamples:\n  steward audit verify\n  steward audit \
verify --json\n  steward audit verify --checkpoints /mnt/witness/steward --from-checkpoint trusted.checkpoint"
    )]
    Verify {
        /// A checkpoint kept outside the database (a copy from the export directory, a
        /// receipt's): the records must reproduce its root, so history rewritten since is caught.
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Option<PathBuf>,
        /// Directory of exported checkpoints to compare with the database's (default: the
        /// configured export directory, when it exists).
        #[arg(long, value_name = "DIR")]
        checkpoints: Option<PathBuf>,
        /// The log's note verifier key, or a file holding it (default: from the server's
        /// signing key).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Print the outcome as JSON (`verified`, the counts and root, or the `problem`).
        #[arg(long)]
        json: bool,
    },
    /// Check a receipt (an inclusion proof from `GET /api/v1/access-log/{seq}/proof`) offline:
    /// no database, no server, only the log's public key.
    #[command(
        after_help = "Exit codes: 0 the receipt proves its record; 1 it does not; 2 the \
check could not run.\n\nExample:\n  steward audit verify-proof --key steward.key --proof \
receipt.json --checkpoint checkpoint.txt"
    )]
    VerifyProof {
        /// The log's note verifier key (`steward audit key` prints it), or a file holding it.
        #[arg(long, value_name = "KEY")]
        key: String,
        /// The receipt file.
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// A copy of the checkpoint obtained independently (default: the receipt's own).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Print the log's note verifier key, to give recipients and auditors.
    #[command(
        after_help = "Examples:\n  steward audit key > steward-access-log.key\n  steward audit key --json\n\nExit codes:\n  0  printed\n  2  the signing key cannot be read"
    )]
    Key {
        /// Print `{"verifier_key": ...}` instead of the bare key.
        #[arg(long)]
        json: bool,
    },
    /// Write the records the filters select, as CSV or JSON lines, to standard output; the
    /// export is itself logged.
    #[command(after_help = "Example:\n  steward audit export --format csv --action \
login_failed --from 2026-01-01T00:00:00Z\n\nExit codes:\n  0  exported\n  2  a filter is \
malformed, or the log cannot be read")]
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// Only events about this release (id).
        #[arg(long)]
        release: Option<String>,
        /// Only events under this DUA number.
        #[arg(long)]
        dua: Option<String>,
        /// Only events by this user (id).
        #[arg(long)]
        user: Option<String>,
        /// Only events by people of this organization (id).
        #[arg(long)]
        organization: Option<String>,
        /// Only events of this action (e.g. login_failed, release_transitioned).
        #[arg(long)]
        action: Option<String>,
        /// Only events with this outcome: granted, denied, succeeded, failed.
        #[arg(long)]
        outcome: Option<String>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Only events before this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
    },
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Why an audit command could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditCommandError {
    /// Steward's database or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The log could not be read or written.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The verification could not run.
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A filter is refused.
    #[error("invalid filter {0}")]
    Filter(#[from] review::FilterError),
    /// The signing key is unusable.
    #[error("{0}")]
    Key(String),
}

fn read(path: &Path) -> Result<Vec<u8>, AuditCommandError> {
    std::fs::read(path).map_err(|source| AuditCommandError::File {
        path: path.display().to_string(),
        source,
    })
}

/// A key given as text or as a file holding it.
fn key_text(key: &str) -> Result<String, AuditCommandError> {
    let path = Path::new(key);
    if key.contains('+') && !path.exists() {
        return Ok(key.trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&read(path)?).trim().to_owned())
}

/// The server's checkpoint signer, from its signing key; never generates one.
fn server_signer(settings: &Settings) -> Result<CheckpointSigner, AuditCommandError> {
    let path = settings.signing_key_path();
    if !path.exists() {
        return Err(AuditCommandError::Key(format!(
            "no signing key at {}: give the log's key with --key",
            path.display()
        )));
    }
    let signer =
        ServerSigner::load_or_generate(&path).map_err(|e| AuditCommandError::Key(e.to_string()))?;
    Ok(CheckpointSigner::new(
        &settings.audit.origin,
        signer.signing_key(),
    ))
}

/// `steward audit verify-proof`, which needs neither settings nor a runtime.
pub fn verify_proof(key: &str, proof_file: &Path, checkpoint_file: Option<&Path>) -> ExitCode {
    let inputs = (|| -> Result<_, AuditCommandError> {
        let key = key_text(key)?;
        let receipt = read(proof_file)?;
        let checkpoint = checkpoint_file.map(read).transpose()?;
        Ok((key, receipt, checkpoint))
    })();
    let (key, receipt, checkpoint) = match inputs {
        Ok(inputs) => inputs,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match proof::check_receipt(&receipt, checkpoint.as_deref(), &key) {
        Ok(checked) => {
            println!(
                "receipt verified: record {} is in {}, a tree of {} records",
                checked.seq, checked.origin, checked.tree_size
            );
            ExitCode::SUCCESS
        }
        Err(proof::ReceiptError::Checkpoint(checkpoint::CheckpointError::BadKey)) => {
            eprintln!("error: --key: {}", checkpoint::CheckpointError::BadKey);
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("receipt refused: {error}");
            ExitCode::from(1)
        }
    }
}

/// Runs an audit command that needs the settings; returns the exit code.
pub async fn run(settings: &Settings, command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            from_checkpoint,
            checkpoints,
            key,
            json,
        } => match verify_command(settings, from_checkpoint, checkpoints, key, json).await {
            Ok(code) => code,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
        AuditCommand::Key { json } => match server_signer(settings) {
            Ok(signer) if json => {
                println!(
                    "{}",
                    serde_json::json!({ "verifier_key": signer.verifier_key() })
                );
                ExitCode::SUCCESS
            }
            Ok(signer) => {
                println!("{}", signer.verifier_key());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
        AuditCommand::Export {
            format,
            release,
            dua,
            user,
            organization,
            action,
            outcome,
            from,
            to,
        } => {
            let raw = RawFilter {
                release,
                dua,
                user,
                organization,
                action,
                outcome,
                from,
                to,
                ..RawFilter::default()
            };
            match export(settings, format, &raw).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(2)
                }
            }
        }
        // Handled before the runtime starts.
        AuditCommand::VerifyProof { .. } => ExitCode::from(2),
    }
}

async fn verify_command(
    settings: &Settings,
    from_checkpoint: Option<PathBuf>,
    checkpoints: Option<PathBuf>,
    key: Option<String>,
    json: bool,
) -> Result<ExitCode, AuditCommandError> {
    let verifier_key = match key {
        Some(key) => key_text(&key)?,
        None => server_signer(settings)?.verifier_key(),
    };
    checkpoint::check_verifier_key(&verifier_key)
        .map_err(|e| AuditCommandError::Key(format!("--key: {e}")))?;
    let trusted = match &from_checkpoint {
        Some(path) => {
            let note = read(path)?;
            let opened = checkpoint::open(&note, &verifier_key).map_err(|error| {
                verify::VerifyError::TrustedCheckpoint {
                    path: path.display().to_string(),
                    error,
                }
            })?;
            Some((format!("trusted {}", path.display()), opened))
        }
        None => None,
    };
    let export_dir = checkpoints.or_else(|| {
        let dir = settings.checkpoint_export_dir();
        dir.exists().then_some(dir)
    });
    let exported = match &export_dir {
        Some(dir) => verify::read_export_dir(dir)?,
        None => Vec::new(),
    };
    let deadline = SystemClock.now()
        - time::Duration::seconds(settings.audit.integration_deadline_secs as i64);
    let expect = Expectations {
        verifier_key,
        exported,
        trusted,
        integrate_before: crate::audit::format_time(deadline)
            .map_err(crate::audit::AuditError::from)?,
    };
    let db = connect_database(settings).await?;
    db.check_schema().await.map_err(StartupError::from)?;
    let outcome = verify::verify_log(&mut DatabaseLog::open(&db).await?, &expect).await?;
    db.close().await;
    if json {
        let shown = match &outcome {
            Ok(verified) => serde_json::json!({
                "verified": true,
                "records": verified.records,
                "legacy_records": verified.legacy_records,
                "root": hex::encode(verified.root.0),
                "checkpoints": verified.checkpoints,
                "export_dir": export_dir,
                "pending": verified.pending,
            }),
            Err(problem) => {
                serde_json::json!({ "verified": false, "problem": problem.to_string() })
            }
        };
        println!("{shown}");
        return Ok(ExitCode::from(u8::from(outcome.is_err())));
    }
    Ok(match outcome {
        Ok(verified) => {
            println!(
                "access log verified: {} records (and {} frozen v1 records), root {}, {} checkpoints checked{}, {} events awaiting a position",
                verified.records,
                verified.legacy_records,
                hex::encode(verified.root.0),
                verified.checkpoints,
                match &export_dir {
                    Some(dir) => format!(" (export {})", dir.display()),
                    None => String::new(),
                },
                verified.pending
            );
            ExitCode::SUCCESS
        }
        Err(problem) => {
            println!("access log FAILED verification: {problem}");
            ExitCode::from(1)
        }
    })
}

const CSV_HEADER: [&str; 19] = [
    "id",
    "seq",
    "at",
    "actor_kind",
    "actor_user",
    "actor_org",
    "action",
    "target_kind",
    "target_id",
    "release_id",
    "history_entry",
    "dua_number",
    "file_id",
    "outcome",
    "reason",
    "client_addr",
    "user_agent",
    "bytes",
    "integrated_at",
];

fn csv_fields(record: &crate::audit::AccessRecord) -> [String; 19] {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let number = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    [
        record.id.to_string(),
        number(record.seq),
        record.at.clone(),
        record.actor_kind.clone(),
        text(&record.actor_user),
        text(&record.actor_org),
        record.action.clone(),
        record.target_kind.clone(),
        text(&record.target_id),
        text(&record.release_id),
        number(record.history_entry),
        text(&record.dua_number),
        text(&record.file_id),
        record.outcome.clone(),
        text(&record.reason),
        text(&record.client_addr),
        text(&record.user_agent),
        number(record.bytes),
        text(&record.integrated_at),
    ]
}

/// Where an export goes.
enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Json(W),
}

/// Streams the selected records, a page at a time, to standard output.
async fn export(
    settings: &Settings,
    format: ExportFormat,
    raw: &RawFilter,
) -> Result<(), AuditCommandError> {
    let (filter, mut page) = raw.check()?;
    page.limit = review::MAX_PAGE;
    let db = connect_database(settings).await?;
    db.check_schema().await.map_err(StartupError::from)?;
    let audit = AuditLog::new(db.clone(), std::sync::Arc::new(SystemClock));
    audit
        .append(
            &AccessEvent::new(
                Actor::System,
                Action::AccessLogReviewed,
                Target::AccessLog,
                Outcome::Granted,
            )
            .with_reason(Reason::new("access log exported from the command line")),
        )
        .await?;
    let failed = |e: std::io::Error| AuditCommandError::File {
        path: "standard output".into(),
        source: e,
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(out);
            writer
                .write_record(CSV_HEADER)
                .map_err(|e| failed(e.into()))?;
            Sink::Csv(Box::new(writer))
        }
        ExportFormat::Json => Sink::Json(out),
    };
    loop {
        let result = review::page(&db, &filter, page).await?;
        for record in &result.records {
            match &mut sink {
                Sink::Csv(writer) => writer
                    .write_record(csv_fields(record))
                    .map_err(|e| failed(e.into()))?,
                Sink::Json(out) => {
                    serde_json::to_writer(&mut *out, record).map_err(|e| failed(e.into()))?;
                    out.write_all(b"\n").map_err(failed)?;
                }
            }
        }
        match result.records.last() {
            Some(last) if result.next.is_some() => page.after = last.id,
            _ => break,
        }
    }
    match &mut sink {
        Sink::Csv(writer) => writer.flush().map_err(failed)?,
        Sink::Json(out) => out.flush().map_err(failed)?,
    }
    db.close().await;
    Ok(())
}
