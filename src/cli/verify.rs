//! `steward verify certificate FILE --key PUB`: checks a destruction certificate offline, with
//! nothing but the file and the server's public signing key (hex, as
//! `GET /api/v1/server/signing-key` gives it, or a file holding it). It reads none of the
//! server's settings, so a recipient or an auditor runs it anywhere.
//!
//! `steward verify audit FILE`: checks an aggregate release's `suppression_audit.json` from
//! its published counts alone, solving the attacker's linear programs again.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::destruction::certificate::{self, CertificateError};
use crate::disclosure::publish::check_audit;

/// `steward verify ...`
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Check a destruction certificate's signature and content against the server's key.
    #[command(after_help = concat!(
        "Example:\n  steward verify certificate destruction.json --key 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n\n",
        "Exit codes:\n  0  the certificate verifies\n  1  it does not: altered, signed by another key, or not a certificate\n  2  bad arguments (unreadable file, malformed key)"
    ))]
    Certificate {
        /// The certificate file (JSON).
        file: PathBuf,
        /// The server's Ed25519 public key: 64 hex digits, or a file holding them.
        #[arg(long, value_name = "PUB")]
        key: String,
    },
    /// Check an aggregate table's suppression from its audit file: no suppressed count can be
    /// worked out, and none of 1 to threshold-1 pinned below the threshold.
    #[command(after_help = concat!(
        "Example:\n  steward verify audit extract/suppression_audit.json\n\n",
        "Exit codes:\n  0  every suppressed cell is safe\n  1  a cell is not (each is named), or the file is not an audit file\n  2  the file cannot be read"
    ))]
    Audit {
        /// The decrypted audit file (JSON).
        file: PathBuf,
    },
}

/// Runs a verify command; the exit code says the outcome.
pub fn run(command: VerifyCommand) -> ExitCode {
    match command {
        VerifyCommand::Certificate { file, key } => verify_certificate(&file, &key),
        VerifyCommand::Audit { file } => verify_audit(&file),
    }
}

fn public_key(key: &str) -> Result<String, String> {
    let text = if key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        key.to_owned()
    } else {
        std::fs::read_to_string(key)
            .map_err(|e| format!("--key is neither 64 hex digits nor a readable file: {e}"))?
            .trim()
            .to_owned()
    };
    if text.len() != 64 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("--key must be the server's Ed25519 public key, 64 hex digits".into());
    }
    Ok(text.to_ascii_lowercase())
}

fn verify_certificate(file: &PathBuf, key: &str) -> ExitCode {
    let key = match public_key(key) {
        Ok(key) => key,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match certificate::verify(&bytes, &key) {
        Ok(c) => {
            println!(
                "certificate verified: release {} ({}), {} object(s) deleted, {} key(s) erased at {}",
                c.release,
                c.organization,
                c.objects.len(),
                c.keys_erased.len(),
                c.erased_at
            );
            ExitCode::SUCCESS
        }
        Err(
            e @ (CertificateError::Malformed(_)
            | CertificateError::Format(_)
            | CertificateError::BadSignature
            | CertificateError::OtherSigner { .. }),
        ) => {
            eprintln!("certificate NOT verified: {e}");
            ExitCode::from(1)
        }
    }
}

fn verify_audit(file: &PathBuf) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    match check_audit(&bytes) {
        Ok(check) if check.unsafe_cells.is_empty() => {
            println!(
                "suppression verified: {} cells, {} primary and {} complementary suppressions, none recoverable",
                check.cells, check.primary, check.complementary
            );
            ExitCode::SUCCESS
        }
        Ok(check) => {
            for (cell, interval) in &check.unsafe_cells {
                eprintln!(
                    "cell {} is not safe: an attacker bounds it to [{}, {}]",
                    cell.join(" / "),
                    interval.low,
                    interval.high
                );
            }
            eprintln!(
                "suppression NOT verified: {} unsafe cell(s)",
                check.unsafe_cells.len()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("suppression NOT verified: {e}");
            ExitCode::from(1)
        }
    }
}
