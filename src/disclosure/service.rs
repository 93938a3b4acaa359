//! Publication reviews as a service: a recipient named by a release's DUA submits a table
//! before publishing it (seed 001 section 4.3 J); Steward reviews it (`review.rs`), keeps the
//! upload encrypted to the master identity with the findings, and logs the review in the same
//! transaction. The privacy officer reads every review.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use super::review::{review, Review, ReviewError, MAX_UPLOAD_BYTES};
use crate::audit::{
    AccessEvent, Action as Logged, Actor, AuditError, AuditLog, Client, Outcome, Target,
};
use crate::auth::{Action, AuthError, Authenticator, Principal, Resource};
use crate::clock::SharedClock;
use crate::crypto::master::MasterIdentity;
use crate::db::{timestamp, Database, DbError};
use crate::domain::release::ReleaseId;
use crate::release::{nobody_facts, ReleaseRecord, ReleaseService, ServiceError};

/// The threshold a review applies (seed 003: no cell of 1 to 10 shown).
pub const REVIEW_THRESHOLD: u64 = 11;

/// Everything a publication review can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    /// No such release (or the caller may not know it exists).
    #[error("no such release")]
    NotFound,
    /// The caller may not do this (the refusal is logged).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The upload is not a table that can be reviewed.
    #[error(transparent)]
    Upload(#[from] ReviewError),
    /// The release service failed.
    #[error(transparent)]
    Release(#[from] ServiceError),
    /// The access log could not be written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The upload could not be sealed.
    #[error("the upload could not be encrypted: {0}")]
    Seal(String),
}

impl From<sqlx::Error> for PublicationError {
    fn from(e: sqlx::Error) -> Self {
        PublicationError::Database(DbError::Sqlx(e))
    }
}

/// A stored review, as the privacy officer reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReview {
    /// Its id.
    pub id: Uuid,
    /// The release.
    pub release: Uuid,
    /// Who submitted it.
    pub submitted_by: Uuid,
    /// When.
    pub submitted_at: String,
    /// Whether the table may be published as it was.
    pub passes: bool,
    /// The SHA-256 of the upload.
    pub upload_sha256: String,
    /// What was found.
    pub review: serde_json::Value,
}

/// Publication reviews.
#[derive(Debug, Clone)]
pub struct PublicationReviews {
    db: Database,
    audit: AuditLog,
    clock: SharedClock,
    auth: Authenticator,
    releases: ReleaseService,
    master: Arc<MasterIdentity>,
}

impl PublicationReviews {
    /// The service.
    pub fn new(
        db: Database,
        audit: AuditLog,
        clock: SharedClock,
        auth: Authenticator,
        releases: ReleaseService,
        master: Arc<MasterIdentity>,
    ) -> Self {
        Self {
            db,
            audit,
            clock,
            auth,
            releases,
            master,
        }
    }

    /// Reviews `upload` (CSV) for `release`, stores it sealed with the findings, and logs it.
    pub async fn submit(
        &self,
        principal: &Principal,
        release: ReleaseId,
        upload: &[u8],
        route: &'static str,
        client: &Client,
    ) -> Result<(Uuid, Review), PublicationError> {
        let record = self.releases.record(release).await?;
        let facts = record
            .as_ref()
            .map_or_else(nobody_facts, ReleaseRecord::facts);
        self.auth
            .check(
                principal,
                Action::SubmitPublicationReview,
                &Resource::Release(&facts),
                route,
                client,
            )
            .await?;
        record.ok_or(PublicationError::NotFound)?;
        if upload.len() > MAX_UPLOAD_BYTES {
            return Err(ReviewError::TooLarge.into());
        }
        let result = review(upload, REVIEW_THRESHOLD)?;
        let text = std::str::from_utf8(upload).map_err(|_| ReviewError::Csv {
            line: 1,
            problem: "not UTF-8 text".into(),
        })?;
        let sealed = self
            .master
            .wrap_text(text)
            .map_err(|e| PublicationError::Seal(e.to_string()))?;
        let id = Uuid::new_v4();
        let findings =
            serde_json::to_string(&result).map_err(|e| PublicationError::Seal(e.to_string()))?;
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::PublicationReviewed,
            Target::Release {
                id: release.0,
                entry: 0,
            },
            if result.passes {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            },
        )
        .with_count(result.findings.len() as u64)
        .with_client(client);
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO publication_reviews (id, release_id, submitted_by, submitted_at, \
             threshold, passes, findings_json, upload_sealed, upload_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id.to_string())
        .bind(release.0.to_string())
        .bind(principal.user_id.0.to_string())
        .bind(timestamp::encode(self.clock.now())?)
        .bind(REVIEW_THRESHOLD as i64)
        .bind(i64::from(result.passes))
        .bind(&findings)
        .bind(&sealed)
        .bind(hex::encode(Sha256::digest(upload)))
        .execute(&mut *tx)
        .await?;
        self.audit.record(&mut tx, &event).await?;
        tx.commit().await?;
        Ok((id, result))
    }

    /// Every review, newest first; reading them is logged.
    pub async fn list(
        &self,
        principal: &Principal,
        route: &'static str,
        client: &Client,
    ) -> Result<Vec<StoredReview>, PublicationError> {
        self.auth
            .check(
                principal,
                Action::ReadPublicationReviews,
                &Resource::Releases,
                route,
                client,
            )
            .await?;
        let rows = sqlx::query(
            "SELECT id, release_id, submitted_by, submitted_at, passes, upload_sha256, \
             findings_json FROM publication_reviews ORDER BY submitted_at DESC, id",
        )
        .fetch_all(self.db.pool())
        .await?;
        let uuid =
            |text: String| Uuid::parse_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)));
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let findings: String = row.try_get("findings_json")?;
            out.push(StoredReview {
                id: uuid(row.try_get("id")?)?,
                release: uuid(row.try_get("release_id")?)?,
                submitted_by: uuid(row.try_get("submitted_by")?)?,
                submitted_at: row.try_get("submitted_at")?,
                passes: row.try_get::<i64, _>("passes")? == 1,
                upload_sha256: row.try_get("upload_sha256")?,
                review: serde_json::from_str(&findings).unwrap_or(serde_json::Value::Null),
            });
        }
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::PublicationReviewsRead,
            Target::Route(route),
            Outcome::Succeeded,
        )
        .with_count(out.len() as u64)
        .with_client(client);
        self.audit.append(&event).await?;
        Ok(out)
    }
}
