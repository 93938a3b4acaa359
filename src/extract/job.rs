//! The extract job: everything between "IT staff started the extract" and "the release is
//! available". It runs under a lease held by the job runner:
//!
//! 1. check the release is `extracting` (a predecessor may already have finished it);
//! 2. sweep what a dead predecessor left under the release's prefix (objects, open uploads);
//! 3. get the release identity (made and wrapped under the master identity on the first run);
//! 4. encrypt to it and to every key of every user the DUA names (a user without a key fails
//!    the job: they could never decrypt);
//! 5. per dataset: plan against the approved elements and run the streaming pipeline;
//! 6. add the approval letter and the data dictionary (encrypted) and the signed manifest;
//! 7. record the files only while the lease is still held (fencing), then make the release
//!    `available`.
//!
//! Any failure deletes this attempt's objects; the last failed attempt (or a cancel) returns
//! the release to `dua_executed` so IT staff can start again.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::aggregate::{
    aggregate_dictionary, build_aggregate, AggregateError as AggregateBuildError,
};
use super::manifest::{self, FileKind, Manifest, ManifestFile};
use super::members::{close_links, first_pass, MemberPassReport, MemberSource};
use super::seal::{self, SealDigests};
use super::{
    extract_dataset, DatasetRequest, ExtractError, JobControl, RowCounts, SealedFile,
    SourceLocation,
};
use crate::audit::Client;
use crate::config::PolicySecret;
use crate::crypto::master::ReleaseIdentity;
use crate::db::extracts::{self, ExtractFileRow, ExtractStoreError, WrappedKey};
use crate::db::{optout, recipient_keys};
use crate::domain::aggregate::AggregateRequest;
use crate::domain::release::{ReleaseId, ReleaseStatus, Transition};
use crate::jobs::{ExecutionError, Job, JobExecutor, Lease};
use crate::policy::aggregate::plan_aggregate;
use crate::policy::{
    plan, ElementId, ExtractPlan, FileType, LinkageKey, NamedIdentities, OptOutHasher, OptOutSet,
    ReleaseSpec, RowFilter, WithheldMembers,
};
use crate::release::service::{Caller, ReleaseRecord};
use crate::state::AppState;
use crate::storage::{KeyPrefix, ObjectKey};

/// Runs extract jobs.
pub struct ExtractExecutor {
    state: AppState,
}

impl ExtractExecutor {
    /// An executor over the application's database, store, keys and settings.
    pub fn new(state: &AppState) -> Self {
        Self {
            state: state.clone(),
        }
    }
}

/// The object key prefix of everything a release's extracts store.
pub fn release_prefix(release: Uuid) -> String {
    format!("releases/{release}/")
}

/// A failure, as the job records it: Steward's own message, never a value from the data.
fn failed(context: &str, error: impl std::fmt::Display) -> ExecutionError {
    ExecutionError::Failed(format!("{context}: {error}"))
}

/// A failure no retry can change (configuration, schema, plan).
fn permanent(context: &str, error: impl std::fmt::Display) -> ExecutionError {
    ExecutionError::Permanent(format!("{context}: {error}"))
}

/// A pipeline failure: permanent when it lies in the data, schema or configuration.
fn extract_failed(context: &str, error: ExtractError) -> ExecutionError {
    match error {
        ExtractError::Cancelled => ExecutionError::Cancelled,
        e if e.is_permanent() => permanent(context, e),
        e => failed(context, e),
    }
}

/// The release's approved row filters, as the policy applies them.
pub fn row_filter(request: &crate::domain::request::DataRequest) -> RowFilter {
    RowFilter {
        years: Some(request.filters.years.first..=request.filters.years.last),
        payers: request.filters.payers.iter().cloned().collect(),
    }
}

/// The release's plan for one dataset (pure: the catalog, schema and approved elements).
pub fn plan_dataset(
    policy: &crate::policy::Policy,
    record: &ReleaseRecord,
    file_type: FileType,
    linkage: &LinkageKey,
) -> Result<ExtractPlan, ExecutionError> {
    let catalog = policy.catalog();
    let schema = policy.schema(file_type).ok_or_else(|| {
        ExecutionError::Permanent(format!("no dataset schema for {}", file_type.as_str()))
    })?;
    let of_this_file = |ids: &mut dyn Iterator<Item = &ElementId>| -> BTreeSet<ElementId> {
        ids.filter(|id| id.file_type() == file_type)
            .cloned()
            .collect()
    };
    let spec = ReleaseSpec {
        level: record.row.level,
        approved: of_this_file(&mut record.approved.iter()),
        supplemental_requested: of_this_file(&mut record.request.supplemental.iter()),
        linkage: linkage.clone(),
        filter: row_filter(&record.request),
    };
    plan(&spec, schema, catalog).map_err(|e| permanent("planning", e))
}

/// The plan of an aggregate release's table (pure: the catalog, schema and approved
/// elements), with the one dataset it counts.
pub fn plan_release_aggregate(
    policy: &crate::policy::Policy,
    record: &ReleaseRecord,
    aggregate: &AggregateRequest,
) -> Result<(FileType, crate::policy::aggregate::AggregatePlan), ExecutionError> {
    let [file_type] = record.request.datasets[..] else {
        return Err(permanent(
            "planning",
            "an aggregate release counts exactly one dataset",
        ));
    };
    let schema = policy.schema(file_type).ok_or_else(|| {
        ExecutionError::Permanent(format!("no dataset schema for {}", file_type.as_str()))
    })?;
    let plan = plan_aggregate(
        aggregate,
        record.row.level,
        &record.approved,
        row_filter(&record.request),
        policy.catalog(),
        schema,
        policy.zip3_population().clone(),
    )
    .map_err(|e| permanent("planning the table", e))?;
    Ok((file_type, plan))
}

/// The configured source of one dataset.
pub fn dataset_source(
    settings: &crate::config::Settings,
    file_type: FileType,
) -> Result<SourceLocation, ExecutionError> {
    settings
        .extract
        .sources
        .get(file_type.as_str())
        .map(|s| source_location(s))
        .transpose()?
        .ok_or_else(|| {
            ExecutionError::Permanent(format!(
                "no source configured for dataset {0} (extract.sources.{0})",
                file_type.as_str()
            ))
        })
}

#[async_trait]
impl JobExecutor for ExtractExecutor {
    #[tracing::instrument(skip_all, fields(job_id = %job.id, release_id = %job.release_id, attempt = lease.attempt))]
    async fn execute(
        &self,
        job: &Job,
        lease: &Lease,
        control: Arc<JobControl>,
    ) -> Result<(), ExecutionError> {
        let release_id = ReleaseId(job.release_id);
        let record = self
            .state
            .releases
            .record(release_id)
            .await
            .map_err(|e| failed("loading the release", e))?
            .ok_or_else(|| ExecutionError::Failed(format!("release {release_id} not found")))?;
        match record.row.status {
            ReleaseStatus::Extracting => {}
            // A predecessor finished and published before losing its lease: nothing to redo.
            ReleaseStatus::Available => return Ok(()),
            other => {
                return Err(ExecutionError::Failed(format!(
                    "release {release_id} is {other}, not extracting"
                )))
            }
        }
        let attempt_prefix = format!(
            "{}{}-a{}/",
            release_prefix(job.release_id),
            job.id,
            lease.attempt
        );
        let result = self.build(job, &record, &attempt_prefix, &control).await;
        let result = match result {
            Ok(rows) => self.publish(job, lease, &rows).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                self.discard(&attempt_prefix).await;
                let cancelled = matches!(error, ExecutionError::Cancelled);
                // The release goes back to dua_executed once no attempt is left (or on cancel,
                // or on a failure no retry can change), so IT staff can fix the cause and start
                // again.
                if cancelled || error.is_permanent() || lease.attempt >= job.max_attempts {
                    let reason = if cancelled {
                        "cancelled"
                    } else {
                        "extraction failed"
                    };
                    if let Err(e) = self
                        .state
                        .releases
                        .transition(
                            Caller::System,
                            release_id,
                            Transition::ExtractionFailed,
                            Some(reason),
                            &Client::default(),
                        )
                        .await
                    {
                        tracing::error!(error = %e, "could not return the release to dua_executed");
                    }
                }
                Err(error)
            }
        }
    }

    /// Returns the release of a job the sweep ended to `dua_executed` (if it is still
    /// `extracting` and no other job is live for it), so IT staff can start or retry it.
    async fn abandoned(&self, job: &Job) -> Result<(), ExecutionError> {
        let release_id = ReleaseId(job.release_id);
        let Some(record) = self
            .state
            .releases
            .record(release_id)
            .await
            .map_err(|e| failed("loading the release", e))?
        else {
            return Ok(());
        };
        if record.row.status != ReleaseStatus::Extracting {
            return Ok(());
        }
        let jobs = self
            .state
            .jobs
            .list(Some(job.release_id))
            .await
            .map_err(|e| failed("listing jobs", e))?;
        let live = jobs.iter().any(|j| {
            matches!(
                j.state,
                crate::jobs::JobState::Queued | crate::jobs::JobState::Running
            )
        });
        if live {
            return Ok(());
        }
        let reason = match job.state {
            crate::jobs::JobState::Cancelled => "cancelled; its runner stopped",
            _ => "extraction failed; its runner stopped",
        };
        self.state
            .releases
            .transition(
                Caller::System,
                release_id,
                Transition::ExtractionFailed,
                Some(reason),
                &Client::default(),
            )
            .await
            .map(|_| ())
            .map_err(|e| failed("returning the release to dua_executed", e))
    }

    /// Aborts open uploads and deletes unrecorded objects of releases that have no live job:
    /// nothing can still be writing them, and no manifest lists them.
    async fn sweep_orphans(&self) -> Result<u64, ExecutionError> {
        let store = &self.state.store;
        let prefix = KeyPrefix::parse("releases/").map_err(|e| failed("prefix", e))?;
        let mut removed = 0;
        let mut verdicts: std::collections::BTreeMap<Uuid, bool> =
            std::collections::BTreeMap::new();
        for upload in store
            .pending_uploads(&prefix)
            .await
            .map_err(|e| failed("listing open uploads", e))?
        {
            if self.is_orphaned(&upload.key, &mut verdicts).await? {
                store
                    .abort_upload(&upload)
                    .await
                    .map_err(|e| failed("aborting an open upload", e))?;
                removed += 1;
            }
        }
        for object in store
            .list(&prefix)
            .await
            .map_err(|e| failed("listing objects", e))?
        {
            if self.is_orphaned(&object.key, &mut verdicts).await? {
                store
                    .delete(&object.key)
                    .await
                    .map_err(|e| failed("deleting an orphaned object", e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl ExtractExecutor {
    /// Whether `key` (under `releases/<id>/`) belongs to no live job and no recorded extract.
    async fn is_orphaned(
        &self,
        key: &ObjectKey,
        live: &mut std::collections::BTreeMap<Uuid, bool>,
    ) -> Result<bool, ExecutionError> {
        let Some(release) = key
            .as_str()
            .strip_prefix("releases/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return Ok(false);
        };
        let busy = match live.get(&release) {
            Some(busy) => *busy,
            None => {
                let jobs = self
                    .state
                    .jobs
                    .list(Some(release))
                    .await
                    .map_err(|e| failed("listing jobs", e))?;
                let busy = jobs.iter().any(|j| {
                    matches!(
                        j.state,
                        crate::jobs::JobState::Queued | crate::jobs::JobState::Running
                    )
                });
                live.insert(release, busy);
                busy
            }
        };
        if busy {
            return Ok(false);
        }
        let recorded = extracts::files(&self.state.db, release)
            .await
            .map_err(|e| failed("listing recorded files", e))?;
        Ok(!recorded.iter().any(|f| f.object_key == key.as_str()))
    }

    async fn build(
        &self,
        job: &Job,
        record: &ReleaseRecord,
        attempt_prefix: &str,
        control: &Arc<JobControl>,
    ) -> Result<Vec<ExtractFileRow>, ExecutionError> {
        let state = &self.state;
        self.sweep_predecessors(job.release_id).await?;
        let identity = self.release_identity(job.release_id).await?;
        let recipients = self.recipients(record, &identity).await?;
        let mut files = match &record.request.aggregate {
            Some(aggregate) => {
                self.aggregate_files(job, record, aggregate, &recipients, attempt_prefix, control)
                    .await?
            }
            None => {
                self.row_level_files(job, record, &recipients, attempt_prefix, control)
                    .await?
            }
        };
        files.push(
            self.put_small(
                attempt_prefix,
                "approval_letter.pdf.age",
                FileKind::ApprovalLetter,
                &self.letter(record).await?,
                &recipients,
            )
            .await?,
        );

        let manifest = Manifest {
            format: manifest::FORMAT.into(),
            release_id: record.row.id.to_string(),
            level: record.row.level.to_string(),
            dua_number: record
                .dua
                .as_ref()
                .map(|d| d.number.clone())
                .unwrap_or_default(),
            created_at: crate::db::timestamp::encode(state.clock.now())
                .map_err(|e| failed("time", e))?,
            files: files.clone(),
        };
        let manifest_json = manifest
            .sign(&state.signer)
            .map_err(|e| failed("signing the manifest", e))?;
        let manifest_key = object_key(attempt_prefix, "manifest.json")?;
        state
            .store
            .put(&manifest_key, &mut manifest_json.as_slice())
            .await
            .map_err(|e| failed("storing the manifest", e))?;

        let mut rows: Vec<ExtractFileRow> = files
            .iter()
            .map(|f| file_row(attempt_prefix, f))
            .collect::<Result<_, _>>()?;
        let manifest_digest = seal::SealDigests::of_plain(&manifest_json);
        rows.push(ExtractFileRow {
            id: uuid::Uuid::new_v4(),
            name: "manifest.json".into(),
            kind: "manifest".into(),
            object_key: manifest_key.to_string(),
            rows: None,
            plaintext_bytes: manifest_digest.plaintext.bytes as i64,
            plaintext_sha256: hex::encode(manifest_digest.plaintext.sha256),
            ciphertext_bytes: manifest_digest.ciphertext.bytes as i64,
            ciphertext_sha256: hex::encode(manifest_digest.ciphertext.sha256),
        });
        if control.is_cancelled() {
            return Err(ExecutionError::Cancelled);
        }
        Ok(rows)
    }

    /// The files of a row-level release: a data file per dataset (after the protected-member
    /// passes when direct identifiers are delivered) and the data dictionary.
    async fn row_level_files(
        &self,
        job: &Job,
        record: &ReleaseRecord,
        recipients: &Recipients,
        attempt_prefix: &str,
        control: &Arc<JobControl>,
    ) -> Result<Vec<ManifestFile>, ExecutionError> {
        let state = &self.state;
        let optouts = self.optouts().await?;
        let linkage_secret = state
            .settings
            .policy_secret(PolicySecret::Linkage)
            .map_err(|e| failed("linkage secret", e))?;
        let linkage = LinkageKey::derive(
            linkage_secret.expose_secret().as_bytes(),
            &record.row.org_id.to_string(),
        )
        .map_err(|e| failed("linkage key", e))?;

        let datasets: BTreeSet<FileType> = record.request.datasets.iter().copied().collect();
        let policy = state.releases.policy();
        let mut planned = Vec::new();
        for file_type in &datasets {
            let plan = Arc::new(plan_dataset(policy, record, *file_type, &linkage)?);
            planned.push((
                *file_type,
                plan,
                dataset_source(&state.settings, *file_type)?,
            ));
        }
        let mut members = WithheldMembers::from(optouts);
        let member_sources = || -> Vec<MemberSource> {
            planned
                .iter()
                .map(|(_, plan, source)| MemberSource {
                    plan: plan.clone(),
                    source: source.clone(),
                })
                .collect()
        };
        let guards_direct = planned
            .iter()
            .any(|(_, p, _)| p.delivers_direct_identifiers());
        if guards_direct {
            let pass = first_pass(
                member_sources(),
                members,
                state.store.clone(),
                control.clone(),
            );
            members = self.member_pass(job, "protected-member pass", pass).await?;
        }

        // Written once. Rows that link a protected member to an identity the first pass had not
        // seen record it as they go; only when an earlier row may have named that identity are
        // the files written again, after the closing passes record every linked identity.
        let (mut files, suspect) = self
            .extract_datasets(
                job,
                &planned,
                &mut members,
                recipients,
                attempt_prefix,
                control,
            )
            .await?;
        if suspect {
            self.discard(attempt_prefix).await;
            let pass = close_links(
                member_sources(),
                members,
                state.store.clone(),
                control.clone(),
            );
            members = self
                .member_pass(job, "linked identities recorded; extracting again", pass)
                .await?;
            let suspect;
            (files, suspect) = self
                .extract_datasets(
                    job,
                    &planned,
                    &mut members,
                    recipients,
                    attempt_prefix,
                    control,
                )
                .await?;
            if suspect {
                // Cannot happen: the closing passes read every row that links identities.
                return Err(ExecutionError::Permanent(
                    "a protected member's identities are still unlinked after the closing passes"
                        .into(),
                ));
            }
        }

        let dictionary = self.data_dictionary(record, &datasets)?;
        files.push(
            self.put_small(
                attempt_prefix,
                "data_dictionary.csv.age",
                FileKind::DataDictionary,
                &dictionary,
                recipients,
            )
            .await?,
        );

        Ok(files)
    }

    /// The files of an aggregate release: the suppressed table, its audit, the notice and the
    /// data dictionary.
    async fn aggregate_files(
        &self,
        job: &Job,
        record: &ReleaseRecord,
        aggregate: &AggregateRequest,
        recipients: &Recipients,
        attempt_prefix: &str,
        control: &Arc<JobControl>,
    ) -> Result<Vec<ManifestFile>, ExecutionError> {
        let state = &self.state;
        let (file_type, plan) = plan_release_aggregate(state.releases.policy(), record, aggregate)?;
        let plan = Arc::new(plan);
        let source = dataset_source(&state.settings, file_type)?;
        let built = build_aggregate(plan.clone(), source, state.store.clone(), control.clone())
            .await
            .map_err(|e| match e {
                AggregateBuildError::Extract(ExtractError::Cancelled) => ExecutionError::Cancelled,
                e if e.is_permanent() => permanent("aggregate table", e),
                e => failed("aggregate table", e),
            })?;
        let (cells, primary, complementary) = built.cells;
        let _ = state
            .jobs
            .log(
                job.id,
                &format!(
                    "aggregate {}: {} of {} source rows counted, {} outside the release's filters; \
                     {cells} cells, {primary} suppressed under {}, {complementary} more so they cannot be worked out",
                    file_type.as_str(),
                    built.counts.counted,
                    built.counts.source_rows,
                    built.counts.outside_filters,
                    plan.threshold(),
                ),
            )
            .await;
        let mut table = self
            .put_small(
                attempt_prefix,
                "aggregate_table.csv.age",
                FileKind::AggregateTable,
                &built.table_csv,
                recipients,
            )
            .await?;
        table.rows = Some(cells as u64);
        let mut columns: Vec<String> = plan
            .dimensions()
            .iter()
            .map(|d| d.dimension.header())
            .collect();
        columns.push("count".into());
        if plan.margins() {
            columns.push("percent".into());
        }
        table.columns = Some(columns);
        table.source = Some(manifest::SourceReport::new(
            plan.rows(),
            &RowCounts {
                source_rows: built.counts.source_rows,
                delivered: built.counts.counted,
                outside_filters: built.counts.outside_filters,
                ..RowCounts::default()
            },
        ));
        let dictionary = aggregate_dictionary(&plan, file_type, self.state.releases.catalog())
            .map_err(|e| failed("data dictionary", e))?;
        let mut files = vec![table];
        for (name, kind, bytes) in [
            (
                "suppression_audit.json.age",
                FileKind::SuppressionAudit,
                &built.audit_json,
            ),
            ("notice.txt.age", FileKind::Notice, &built.notice),
            (
                "data_dictionary.csv.age",
                FileKind::DataDictionary,
                &dictionary,
            ),
        ] {
            files.push(
                self.put_small(attempt_prefix, name, kind, bytes, recipients)
                    .await?,
            );
        }
        Ok(files)
    }

    /// Publishes the extract in one transaction, fenced on the lease: its files recorded, the
    /// release `available` with its history entry and access event, and the job's log line.
    /// A crash before the commit leaves nothing; after it, nothing is left to redo.
    async fn publish(
        &self,
        job: &Job,
        lease: &Lease,
        rows: &[ExtractFileRow],
    ) -> Result<(), ExecutionError> {
        let state = &self.state;
        let available = state
            .releases
            .prepare_transition(
                Caller::System,
                ReleaseId(job.release_id),
                Transition::ExtractionFinished,
                None,
            )
            .await
            .map_err(|e| failed("making the release available", e))?;
        let mut tx = state
            .db
            .begin_write()
            .await
            .map_err(|e| failed("publishing the extract", e))?;
        match extracts::record_files(&mut tx, lease, job.release_id, rows, state.clock.now()).await
        {
            Ok(()) => {}
            // Another runner owns the job now: publish nothing; it cleans up after us.
            Err(ExtractStoreError::LeaseLost(_)) => return Err(ExecutionError::Cancelled),
            Err(e) => return Err(failed("recording the extract", e)),
        }
        state
            .releases
            .apply_transition(&mut tx, Caller::System, &available, &Client::default())
            .await
            .map_err(|e| failed("making the release available", e))?;
        state
            .jobs
            .log_in(&mut tx, job.id, "extract published; release available")
            .await
            .map_err(|e| failed("logging the publication", e))?;
        tx.commit()
            .await
            .map_err(|e| failed("publishing the extract", e))
    }

    /// Extracts every dataset under `attempt_prefix`, returning each file's manifest entry and
    /// whether a row may have named an identity that a later row linked to a protected member
    /// (then the files must be written again). Identities learned from linking rows are added
    /// to `members` as each file ends, so the next file withholds them from its first row.
    async fn extract_datasets(
        &self,
        job: &Job,
        planned: &[(FileType, Arc<ExtractPlan>, SourceLocation)],
        members: &mut WithheldMembers,
        recipients: &Recipients,
        attempt_prefix: &str,
        control: &Arc<JobControl>,
    ) -> Result<(Vec<ManifestFile>, bool), ExecutionError> {
        let state = &self.state;
        // Even when the pass recorded no protected member: the transform still records one it
        // meets (see `transform_stage`), and must know which identities it already named.
        let names_members = planned
            .iter()
            .any(|(_, p, _)| p.delivers_direct_identifiers());
        let named = names_members.then(|| Arc::new(NamedIdentities::new()));
        let mut files = Vec::new();
        let mut suspect = false;
        for (file_type, plan, source) in planned {
            if control.is_cancelled() {
                return Err(ExecutionError::Cancelled);
            }
            let key = object_key(
                attempt_prefix,
                &format!("{}.csv.zst.age", file_type.as_str()),
            )?;
            let request = DatasetRequest {
                plan: plan.clone(),
                source: source.clone(),
                members: Arc::new(members.clone()),
                tolerance: state.settings.invalid_row_tolerance(*file_type),
                named: named.clone(),
                recipients: recipients.boxed(),
                key,
            };
            let sealed = extract_dataset(request, state.store.clone(), control.clone())
                .await
                .map_err(|e| extract_failed(&format!("dataset {}", file_type.as_str()), e))?;
            let _ = state
                .jobs
                .log(job.id, &dataset_summary(*file_type, &sealed))
                .await;
            let file = ManifestFile {
                name: file_name(&sealed.key),
                kind: FileKind::Data,
                rows: Some(sealed.rows),
                columns: Some(sealed.columns.clone()),
                plaintext: sealed.plaintext.into(),
                ciphertext: sealed.ciphertext.into(),
                source: Some(manifest::SourceReport::new(plan, &sealed.counts)),
            };
            for key in &sealed.counts.learned_links {
                members.add_protected(*key);
            }
            suspect |= sealed.counts.suspect_links > 0;
            files.push(file);
        }
        Ok((files, suspect))
    }

    /// Runs one protected-member pass and logs its counts to the job's record.
    async fn member_pass(
        &self,
        job: &Job,
        what: &str,
        pass: impl std::future::Future<
            Output = Result<(WithheldMembers, MemberPassReport), ExtractError>,
        >,
    ) -> Result<WithheldMembers, ExecutionError> {
        let (members, report) = pass.await.map_err(|e| extract_failed(what, e))?;
        let _ = self
            .state
            .jobs
            .log(
                job.id,
                &format!(
                    "{what}: {} protected rows, {} member identities withheld, {} passes",
                    report.protected_rows, report.identities, report.passes
                ),
            )
            .await;
        Ok(members)
    }

    /// Deletes what earlier attempts of this release left behind: they never recorded it, so
    /// it is not part of any extract.
    async fn sweep_predecessors(&self, release: Uuid) -> Result<(), ExecutionError> {
        let prefix = KeyPrefix::parse(&release_prefix(release)).map_err(|e| failed("prefix", e))?;
        let recorded: BTreeSet<String> = extracts::files(&self.state.db, release)
            .await
            .map_err(|e| failed("listing recorded files", e))?
            .into_iter()
            .map(|f| f.object_key)
            .collect();
        let store = &self.state.store;
        for upload in store
            .pending_uploads(&prefix)
            .await
            .map_err(|e| failed("listing open uploads", e))?
        {
            store
                .abort_upload(&upload)
                .await
                .map_err(|e| failed("aborting an open upload", e))?;
        }
        for object in store
            .list(&prefix)
            .await
            .map_err(|e| failed("listing objects", e))?
        {
            if !recorded.contains(object.key.as_str()) {
                store
                    .delete(&object.key)
                    .await
                    .map_err(|e| failed("deleting a leftover object", e))?;
            }
        }
        Ok(())
    }

    /// Best effort: removes this attempt's objects and uploads after a failure; what remains is
    /// swept by the next attempt.
    async fn discard(&self, attempt_prefix: &str) {
        let Ok(prefix) = KeyPrefix::parse(attempt_prefix) else {
            return;
        };
        let store = &self.state.store;
        if let Ok(uploads) = store.pending_uploads(&prefix).await {
            for upload in uploads {
                let _ = store.abort_upload(&upload).await;
            }
        }
        if let Ok(objects) = store.list(&prefix).await {
            for object in objects {
                let _ = store.delete(&object.key).await;
            }
        }
    }

    /// The release's own identity: unwrapped from the database, or made and wrapped now.
    async fn release_identity(&self, release: Uuid) -> Result<ReleaseIdentity, ExecutionError> {
        let state = &self.state;
        let stored = match extracts::wrapped_key(&state.db, release)
            .await
            .map_err(|e| failed("release key", e))?
        {
            Some(stored) => stored,
            None => {
                let fresh = ReleaseIdentity::generate();
                let wrapped = WrappedKey {
                    recipient: fresh.recipient().to_string(),
                    wrapped: state
                        .master
                        .wrap(&fresh)
                        .map_err(|e| failed("wrapping the release key", e))?,
                };
                extracts::insert_wrapped_key(&state.db, release, &wrapped, state.clock.now())
                    .await
                    .map_err(|e| failed("storing the release key", e))?
            }
        };
        let identity = state
            .master
            .unwrap(&stored.wrapped)
            .map_err(|e| failed("release key", e))?;
        if identity.recipient().to_string() != stored.recipient {
            return Err(ExecutionError::Failed(
                "release key does not match its recipient".into(),
            ));
        }
        Ok(identity)
    }

    /// The release identity plus every registered key of every user the DUA names.
    async fn recipients(
        &self,
        record: &ReleaseRecord,
        identity: &ReleaseIdentity,
    ) -> Result<Recipients, ExecutionError> {
        let mut recipients = vec![identity.recipient().to_string()];
        let users = record
            .dua
            .as_ref()
            .map(|d| d.users.clone())
            .unwrap_or_default();
        if users.is_empty() {
            return Err(ExecutionError::Failed(
                "the DUA names no authorized user".into(),
            ));
        }
        for user in users {
            let keys = recipient_keys::list_for_user(&self.state.db, user)
                .await
                .map_err(|e| failed("recipient keys", e))?;
            if keys.is_empty() {
                return Err(ExecutionError::Failed(format!(
                    "authorized user {user} has no registered key; they could never decrypt the extract"
                )));
            }
            for key in keys {
                if parse_recipient(&key.public_key).is_none() {
                    return Err(ExecutionError::Failed(format!(
                        "recipient key {} of user {user} does not parse",
                        key.id
                    )));
                }
                recipients.push(key.public_key);
            }
        }
        Ok(Recipients(recipients))
    }

    async fn optouts(&self) -> Result<OptOutSet, ExecutionError> {
        let secret = self
            .state
            .settings
            .policy_secret(PolicySecret::OptOut)
            .map_err(|e| failed("opt-out secret", e))?;
        let hasher = OptOutHasher::new(secret.expose_secret().as_bytes())
            .map_err(|e| failed("opt-out secret", e))?;
        let keys = optout::all_keys(&self.state.db)
            .await
            .map_err(|e| failed("opt-out registry", e))?;
        Ok(OptOutSet::new(hasher, keys))
    }

    async fn letter(&self, record: &ReleaseRecord) -> Result<Vec<u8>, ExecutionError> {
        let letter = self
            .state
            .releases
            .letter(record.row.id)
            .await
            .map_err(|e| failed("approval letter", e))?
            .ok_or_else(|| ExecutionError::Failed("the release has no approval letter".into()))?;
        crate::release::service::ReleaseService::letter_pdf(&letter)
            .map_err(|e| failed("approval letter", e))
    }

    /// The delivered columns of every dataset: element, name, and the transform applied.
    fn data_dictionary(
        &self,
        record: &ReleaseRecord,
        datasets: &BTreeSet<FileType>,
    ) -> Result<Vec<u8>, ExecutionError> {
        let catalog = self.state.releases.catalog();
        let mut writer = csv::Writer::from_writer(Vec::new());
        let write_error = |e: csv::Error| failed("data dictionary", e);
        writer
            .write_record(["dataset", "column", "element", "name", "transform"])
            .map_err(write_error)?;
        let linkage =
            LinkageKey::derive(&[0u8; 32], "dictionary").map_err(|e| failed("dictionary", e))?;
        for file_type in datasets {
            let plan = plan_dataset(self.state.releases.policy(), record, *file_type, &linkage)?;
            for column in plan.columns() {
                let name = catalog.get(&column.element).map_or("", |e| e.name.as_str());
                writer
                    .write_record([
                        file_type.as_str(),
                        column.header.as_str(),
                        column.element.as_str(),
                        name,
                        &format!("{:?}", column.transform),
                    ])
                    .map_err(write_error)?;
            }
            // The rows delivered, as the dictionary's reader needs to know them.
            for (filter, applies) in [
                ("service_years", plan.year_filter()),
                ("payers", plan.payer_filter()),
            ] {
                let value = manifest::filter_text(plan.filter(), filter);
                writer
                    .write_record([
                        file_type.as_str(),
                        &format!("(row filter: {filter})"),
                        "",
                        &value,
                        &manifest::filter_use_text(&applies),
                    ])
                    .map_err(write_error)?;
            }
        }
        writer
            .into_inner()
            .map_err(|e| failed("data dictionary", e))
    }

    async fn put_small(
        &self,
        attempt_prefix: &str,
        name: &str,
        kind: FileKind,
        plaintext: &[u8],
        recipients: &Recipients,
    ) -> Result<ManifestFile, ExecutionError> {
        let boxed = recipients.boxed();
        let (
            ciphertext,
            SealDigests {
                plaintext: plain,
                ciphertext: cipher,
            },
        ) = seal::seal_small(plaintext, &boxed).map_err(|e| failed(name, e))?;
        let key = object_key(attempt_prefix, name)?;
        self.state
            .store
            .put(&key, &mut ciphertext.as_slice())
            .await
            .map_err(|e| failed(name, e))?;
        Ok(ManifestFile {
            name: name.into(),
            kind,
            rows: None,
            columns: None,
            plaintext: plain.into(),
            ciphertext: cipher.into(),
            source: None,
        })
    }
}

/// Everyone an extract is encrypted to, as validated key texts (the release identity's
/// recipient first); each file gets its own parsed copies, as the pipeline takes ownership.
struct Recipients(Vec<String>);

impl Recipients {
    fn boxed(&self) -> Vec<Box<dyn age::Recipient + Send>> {
        self.0
            .iter()
            .filter_map(|text| parse_recipient(text))
            .collect()
    }
}

/// `age1...` or `ssh-ed25519 ...`, as registered (validated then; parsed again here).
fn parse_recipient(text: &str) -> Option<Box<dyn age::Recipient + Send>> {
    if let Ok(x25519) = age::x25519::Recipient::from_str(text) {
        return Some(Box::new(x25519));
    }
    age::ssh::Recipient::from_str(text)
        .ok()
        .map(|ssh| Box::new(ssh) as Box<dyn age::Recipient + Send>)
}

/// `object:KEY` names an object in the store; anything else is a path.
fn source_location(text: &str) -> Result<SourceLocation, ExecutionError> {
    match text.strip_prefix("object:") {
        Some(key) => ObjectKey::parse(key)
            .map(SourceLocation::Object)
            .map_err(|e| permanent("source object key", e)),
        None => Ok(SourceLocation::Path(text.into())),
    }
}

fn object_key(prefix: &str, name: &str) -> Result<ObjectKey, ExecutionError> {
    ObjectKey::parse(&format!("{prefix}{name}")).map_err(|e| failed("object key", e))
}

fn file_name(key: &ObjectKey) -> String {
    key.as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The job's record of one dataset: counts, never values.
fn dataset_summary(file_type: FileType, sealed: &SealedFile) -> String {
    let counts = &sealed.counts;
    let mut text = format!(
        "dataset {}: {} of {} source rows sealed, {} outside the release's filters",
        file_type.as_str(),
        sealed.rows,
        counts.source_rows,
        counts.outside_filters
    );
    for d in &counts.dropped {
        text.push_str(&format!(
            "; {} invalid rows dropped (column {}: {})",
            d.rows, d.column, d.reason
        ));
    }
    text
}

fn file_row(prefix: &str, file: &ManifestFile) -> Result<ExtractFileRow, ExecutionError> {
    let kind = match file.kind {
        FileKind::Data => "data",
        FileKind::ApprovalLetter => "approval_letter",
        FileKind::DataDictionary => "data_dictionary",
        FileKind::AggregateTable => "aggregate_table",
        FileKind::SuppressionAudit => "suppression_audit",
        FileKind::Notice => "notice",
    };
    Ok(ExtractFileRow {
        id: uuid::Uuid::new_v4(),
        name: file.name.clone(),
        kind: kind.into(),
        object_key: object_key(prefix, &file.name)?.to_string(),
        rows: file.rows.map(|r| r as i64),
        plaintext_bytes: file.plaintext.bytes as i64,
        plaintext_sha256: file.plaintext.sha256.clone(),
        ciphertext_bytes: file.ciphertext.bytes as i64,
        ciphertext_sha256: file.ciphertext.sha256.clone(),
    })
}
