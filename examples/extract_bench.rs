//! Benchmark driver for the extract pipeline (not part of the product binary: it builds an
//! extract without a release, which Steward itself never does).
//!
//! Usage: extract_bench SOURCE.csv LEVEL(I|II|III) STORE_DIR
//! Prints one line: `level rows source_bytes seconds source_mb_per_s peak_rss_kib`, and writes
//! the source columns it reads (in output order) to STORE_DIR/columns.txt for the reference
//! pipeline's `xsv select`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use steward::domain::level::Level;
use steward::extract::{extract_dataset, DatasetRequest, JobControl, SourceLocation};
use steward::policy::catalog::{ElementId, FileType};
use steward::policy::{
    plan, Catalog, DatasetSchema, LinkageKey, OptOutHasher, OptOutSet, ReleaseSpec,
};
use steward::storage::{FsStore, ObjectKey};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, source, level, store_dir] = args.as_slice() else {
        return Err("usage: extract_bench SOURCE.csv LEVEL STORE_DIR".into());
    };
    let level: Level = level.parse()?;
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    let catalog = Catalog::load(&config.join("policy"))?;
    let schema = DatasetSchema::load(&config.join("datasets/med_claim.toml"), &catalog)?;
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
    };
    let plan = plan(&release, &schema, &catalog)?;
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
    let request = DatasetRequest {
        plan: Arc::new(plan),
        source: SourceLocation::Path(PathBuf::from(source)),
        optouts: Arc::new(OptOutSet::new(OptOutHasher::new(&[9u8; 32])?, Vec::new())),
        recipients: vec![Box::new(identity.to_public())],
        key: ObjectKey::parse(&format!("bench/level-{level}/med_claim.csv.zst.age"))?,
    };
    let store = Arc::new(FsStore::new(PathBuf::from(store_dir).join("objects")));
    let control = Arc::new(JobControl::default());
    let started = Instant::now();
    let sealed = extract_dataset(request, store, control.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let source_bytes = control.source_bytes();
    println!(
        "{level} {} {source_bytes} {seconds:.2} {:.1} {}",
        sealed.rows,
        source_bytes as f64 / 1e6 / seconds,
        peak_rss_kib()
    );
    Ok(())
}
