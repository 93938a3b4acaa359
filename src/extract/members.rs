//! The protected-member pass (seed 001 section 3.1 F-H), run before any file of a Level III
//! release is written: it reads the release's sources for rows whose codes put them in a
//! protected category and records the members they are about, so that those members get no
//! direct identifier on any row of any file of the release.
//!
//! A member may appear under several identities (an SSN, a member id per payer). A row that
//! names a recorded identity makes every identity on it recorded too. One pass
//! ([`first_pass`]) reads the datasets that can hold protected rows; a row read before the
//! protected row that links its member to yet another identity is caught while the files are
//! written (`BoundPlan::unrecorded_links`), and then [`close_links`] reads the datasets that
//! link identities until a pass adds nothing, and the job writes the files again. So no chain of
//! rows can join a protected row to a named one, and data whose identities agree row by row (the
//! usual case) is read once more than a release without direct identifiers, not three times.
//! The passes read only the code and identity columns and keep only keyed hashes, in memory.

use std::sync::Arc;

use super::pipeline::SourceRows;
use super::{ExtractError, JobControl, SourceLocation};
use crate::policy::{
    BindError, Effect, ExtractPlan, MemberKey, ProtectedCategories, WithheldMembers,
};
use crate::storage::SharedStore;

/// One dataset of the release, as the pass sees it.
#[derive(Clone)]
pub struct MemberSource {
    /// The dataset's plan (its code and identity columns).
    pub plan: Arc<ExtractPlan>,
    /// Where its source is.
    pub source: SourceLocation,
}

/// What the pass found, for the job's record (counts only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberPassReport {
    /// Source rows in a protected category.
    pub protected_rows: u64,
    /// Member identities withheld because of them (directly or through a linking row).
    pub identities: u64,
    /// Passes over the sources.
    pub passes: u32,
}

/// Which passes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passes {
    /// One pass over the datasets that can hold a protected row.
    First,
    /// Passes over the datasets that link identities, until one adds nothing.
    CloseLinks,
    /// Both: every member and every identity linked to one.
    All,
}

/// Adds to `members` every member with a protected row in any of `sources`, with the other
/// identities on those rows (one pass). Runs on a blocking thread.
pub async fn first_pass(
    sources: Vec<MemberSource>,
    members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    spawn_passes(Passes::First, sources, members, store, control).await
}

/// Adds to `members` every identity linked, through any chain of rows, to one already in it.
pub async fn close_links(
    sources: Vec<MemberSource>,
    members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    spawn_passes(Passes::CloseLinks, sources, members, store, control).await
}

/// Both: every member with a protected row in `sources` and every identity linked to one.
pub async fn collect_protected_members(
    sources: Vec<MemberSource>,
    members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    spawn_passes(Passes::All, sources, members, store, control).await
}

async fn spawn_passes(
    which: Passes,
    sources: Vec<MemberSource>,
    mut members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    let runtime = tokio::runtime::Handle::current();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let report = run_passes(which, &sources, &mut members, &store, &runtime, &control)?;
        Ok((members, report))
    })
    .await
    .unwrap_or(Err(ExtractError::StageLost("protected-member pass")))
}

fn run_passes(
    which: Passes,
    sources: &[MemberSource],
    members: &mut WithheldMembers,
    store: &SharedStore,
    runtime: &tokio::runtime::Handle,
    control: &JobControl,
) -> Result<MemberPassReport, ExtractError> {
    let mut report = MemberPassReport::default();
    // The first pass reads every dataset that can hold a protected row; the closing passes
    // only those that link identities, until nothing new is learned.
    let mut first = which != Passes::CloseLinks;
    loop {
        let mut added = 0u64;
        for source in sources {
            let columns = source.plan.protected_member_columns();
            let (codes, subjects) = (&columns.codes, &columns.subjects);
            let links = columns.links_identities();
            let reads_codes = first && !codes.is_empty();
            let wanted = if first { reads_codes } else { links };
            if subjects.is_empty() || !wanted {
                continue;
            }
            let mut rows = SourceRows::open(&source.source, store, runtime, control)?;
            let find = |column: &str| {
                rows.header
                    .iter()
                    .position(|n| n.trim() == column)
                    .ok_or_else(|| {
                        ExtractError::Bind(BindError::MissingColumn {
                            file: rows.name.clone(),
                            column: column.to_owned(),
                        })
                    })
            };
            let code_columns = if reads_codes {
                codes
                    .iter()
                    .map(|(name, kind)| Ok((find(name)?, *kind)))
                    .collect::<Result<Vec<_>, ExtractError>>()?
            } else {
                Vec::new()
            };
            let subject_columns = subjects
                .iter()
                .map(|(name, kind)| Ok((find(name)?, *kind)))
                .collect::<Result<Vec<_>, ExtractError>>()?;
            let protected: &ProtectedCategories = source.plan.protected();
            let mut record = csv::ByteRecord::new();
            let mut keys: Vec<MemberKey> = Vec::with_capacity(subject_columns.len());
            let mut seen = 0u64;
            while let Some(read) = rows.next(&mut record)? {
                // A malformed row is the transform's to report (or drop); here it says nothing.
                if read.is_err() || record.len() != rows.header.len() {
                    continue;
                }
                keys.clear();
                keys.extend(
                    subject_columns
                        .iter()
                        .filter_map(|&(index, kind)| members.member_key(kind, &record[index])),
                );
                let is_protected = code_columns.iter().any(|&(index, kind)| {
                    let value = &record[index];
                    !value.is_empty()
                        && protected.matches(Effect::BlankDirectIdentifiers, kind, value)
                });
                if is_protected {
                    report.protected_rows += 1;
                }
                if is_protected || keys.iter().any(|k| members.is_protected(*k)) {
                    for key in &keys {
                        if members.add_protected(*key) {
                            added += 1;
                        }
                    }
                }
                seen += 1;
                if seen % 65_536 == 0 && control.is_cancelled() {
                    return Err(ExtractError::Cancelled);
                }
            }
        }
        report.passes += 1;
        report.identities += added;
        let any_links = sources
            .iter()
            .any(|s| s.plan.protected_member_columns().links_identities());
        let closing = which != Passes::First && any_links;
        // A closing pass that added nothing proves the set closed; after the first pass (with
        // `All`) one closing pass must still confirm it.
        if !closing || (added == 0 && !first) || members.protected_len() == 0 {
            break;
        }
        first = false;
    }
    Ok(report)
}
