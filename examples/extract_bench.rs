//! Benchmark driver for the extract pipeline (not part of the product binary: it builds an
//! extract without a release, which Steward itself never does).
//!
//! Usage: extract_bench SOURCE.csv LEVEL(I|II|III) STORE_DIR
//! At Level III the timed work includes the protected-member pass, as in a real extract job.
//! Prints one line: `level rows source_bytes seconds source_mb_per_s peak_rss_kib`, and writes
//! the source columns it reads (in output order) to STORE_DIR/columns.txt for the reference
//! pipeline's `xsv select`. With `BENCH_KEEP_IDENTITY` set it also writes the run's throwaway
//! age identity to STORE_DIR/identity.txt, so that the output can be decrypted and its
//! plaintext given to `zstd_params`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use steward::domain::level::Level;
use steward::extract::members::{first_pass, MemberSource};
use steward::extract::{
    extract_dataset, DatasetRequest, InvalidRowTolerance, JobControl, SourceLocation,
};
use steward::policy::catalog::{ElementId, FileType};
use steward::policy::{
    plan, LinkageKey, NamedIdentities, OptOutHasher, OptOutSet, Policy, ReleaseSpec, RowFilter,
    WithheldMembers,
};
use steward::storage::{FsStore, ObjectKey};

#[path = "support/rss.rs"]
mod rss;
use rss::peak_rss_kib;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, source, level, store_dir] = args.as_slice() else {
        return Err("usage: extract_bench SOURCE.csv LEVEL STORE_DIR".into());
    };
    let level: Level = level.parse()?;
    let policy = Policy::shipped()?;
    let catalog = policy.catalog();
    let schema = policy
        .schema(FileType::MedClaim)
        .ok_or("no med_claim schema")?;
    // The widest release the level allows: every element, every supplemental one requested.
    let approved: BTreeSet<ElementId> = catalog
        .elements_of(FileType::MedClaim)
        .filter(|e| e.lowest_level.is_some_and(|l| l <= level))
        .map(|e| e.id.clone())
        .collect();
    let release = ReleaseSpec {
        level,
        supplemental_requested: approved.clone(),
        approved,
        linkage: LinkageKey::derive(&[7u8; 32], "bench-org")?,
        filter: RowFilter::default(),
    };
    let plan = Arc::new(plan(&release, schema, catalog)?);
    let columns: Vec<&str> = plan
        .columns()
        .iter()
        .map(|c| c.source_column.as_str())
        .collect();
    std::fs::create_dir_all(store_dir)?;
    std::fs::write(
        PathBuf::from(store_dir).join("columns.txt"),
        columns.join(","),
    )?;

    let identity = age::x25519::Identity::generate();
    if std::env::var_os("BENCH_KEEP_IDENTITY").is_some() {
        use age::secrecy::ExposeSecret;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(PathBuf::from(store_dir).join("identity.txt"))?
            .write_all(identity.to_string().expose_secret().as_bytes())?;
    }
    let store: steward::storage::SharedStore =
        Arc::new(FsStore::new(PathBuf::from(store_dir).join("objects")));
    let control = Arc::new(JobControl::default());
    let source = SourceLocation::Path(PathBuf::from(source));
    let started = Instant::now();
    let mut members =
        WithheldMembers::from(OptOutSet::new(OptOutHasher::new(&[9u8; 32])?, Vec::new()));
    if plan.delivers_direct_identifiers() {
        let sources = vec![MemberSource {
            plan: plan.clone(),
            source: source.clone(),
        }];
        let pass_started = Instant::now();
        let report;
        (members, report) = first_pass(sources, members, store.clone(), control.clone()).await?;
        eprintln!(
            "protected-member pass: {:.2} s, {} protected rows, {} identities",
            pass_started.elapsed().as_secs_f64(),
            report.protected_rows,
            report.identities
        );
    }
    // As the job does: identities written with names are noted only where names are written.
    let named = plan
        .delivers_direct_identifiers()
        .then(|| Arc::new(NamedIdentities::new()));
    let request = DatasetRequest {
        plan,
        source,
        members: Arc::new(members),
        tolerance: InvalidRowTolerance::default(),
        named,
        recipients: vec![Box::new(identity.to_public())],
        key: ObjectKey::parse(&format!("bench/level-{level}/med_claim.csv.zst.age"))?,
    };
    let sealed = extract_dataset(request, store, control.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    if !sealed.counts.learned_links.is_empty() {
        // Only suspect links make the job write the files again; the figure leaves that out.
        eprintln!(
            "note: {} identities linked to protected members while writing, {} suspect",
            sealed.counts.learned_links.len(),
            sealed.counts.suspect_links
        );
    }
    // The plaintext's size decides the compressor's work, the costliest stage.
    eprintln!(
        "plaintext CSV: {} bytes (source {} bytes)",
        sealed.plaintext.bytes,
        control.source_bytes()
    );
    let source_bytes = control.source_bytes();
    println!(
        "{level} {} {source_bytes} {seconds:.2} {:.1} {}",
        sealed.rows,
        source_bytes as f64 / 1e6 / seconds,
        peak_rss_kib()
    );
    Ok(())
}
