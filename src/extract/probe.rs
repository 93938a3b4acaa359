//! The row probe the release service asks at approval: do the release's filters select any
//! row of a dataset's source? It reads the source through the plan's own filter, and stops at
//! the first row inside the filters, so the usual answer costs a few rows; only a release that
//! selects nothing reads its source to the end.

use std::sync::Arc;

use async_trait::async_trait;

use super::job::{dataset_source, plan_dataset, plan_release_aggregate};
use super::pipeline::SourceRows;
use super::{ExtractError, JobControl};
use crate::config::Settings;
use crate::policy::{LinkageKey, Policy, RowOutcome, WithheldMembers};
use crate::release::service::{ReleaseRecord, RowProbe};
use crate::storage::SharedStore;

/// Probes configured sources (paths or objects in the store).
#[derive(Debug, Clone)]
pub struct SourceRowProbe {
    settings: Arc<Settings>,
    policy: Arc<Policy>,
    store: SharedStore,
}

impl SourceRowProbe {
    /// A probe over the configured sources.
    pub fn new(settings: Arc<Settings>, policy: Arc<Policy>, store: SharedStore) -> Self {
        Self {
            settings,
            policy,
            store,
        }
    }
}

/// Writes nothing: the probe only asks whether a row would be delivered.
struct Discard;

impl crate::policy::RowSink for Discard {
    type Error = crate::policy::RowError;

    fn field(&mut self, _value: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[async_trait]
impl RowProbe for SourceRowProbe {
    async fn selects_any_row(
        &self,
        record: &ReleaseRecord,
        file_type: crate::policy::FileType,
    ) -> Result<Option<bool>, String> {
        if !self
            .settings
            .extract
            .sources
            .contains_key(file_type.as_str())
        {
            return Ok(None);
        }
        let source = dataset_source(&self.settings, file_type).map_err(|e| e.to_string())?;
        // Replacement ids are computed and thrown away; any key does.
        let linkage = LinkageKey::derive(&[0u8; 32], "probe").map_err(|e| e.to_string())?;
        // An aggregate release reads rows through its table's filters (a plan of no column).
        let plan = match &record.request.aggregate {
            Some(aggregate) => plan_release_aggregate(&self.policy, record, aggregate)
                .map(|(_, table)| table.rows().clone()),
            None => plan_dataset(&self.policy, record, file_type, &linkage),
        }
        .map_err(|e| e.to_string())?;
        let members = WithheldMembers::from(crate::policy::OptOutSet::new(
            crate::policy::OptOutHasher::new(&[0u8; 32]).map_err(|e| e.to_string())?,
            [],
        ));
        let store = self.store.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<bool, ExtractError> {
            let control = JobControl::default();
            let mut rows = SourceRows::open(&source, &store, &runtime, &control)?;
            let mut bound = plan.bind(&rows.name, &rows.header)?;
            let mut record = csv::ByteRecord::new();
            while let Some(read) = rows.next(&mut record)? {
                // Invalid rows are the extract's to report; here only a delivered row counts.
                if read.is_ok()
                    && matches!(
                        bound.apply(&record, &members, &mut Discard),
                        Ok(RowOutcome::Delivered(_))
                    )
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
        .map_err(|_| "the source check stopped unexpectedly".to_owned())?
        .map(Some)
        .map_err(|e| e.to_string())
    }
}
