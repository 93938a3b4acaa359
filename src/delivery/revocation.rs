//! Revocations: the executive director stops access for a user, an organization, a release or
//! one file, with a reason (seed 001 sections 3.3 K, 4.3 I). New requests are refused from the
//! commit on; streams in flight are cut by the access signal the same transaction sends.

use uuid::Uuid;

use super::{DeliveryError, DeliveryService};
use crate::audit::{AccessEvent, Action as Logged, Actor, Client, Outcome, Reason, Target};
use crate::auth::{Action, Resource};
use crate::db::downloads::{self, RevocationRow, RevocationScope};
use crate::db::signal::AccessSignals;
use crate::db::{extracts, users};
use crate::domain::ids::UserId;
use crate::domain::release::ReleaseId;
use crate::release::Caller;

/// Longest reason kept, in characters.
const MAX_REASON_CHARS: usize = 2000;

/// A revocation as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRequest {
    /// What it covers.
    pub scope: RevocationScope,
    /// Why, in the director's words (kept with the revocation, never in the access log).
    pub reason: String,
}

impl DeliveryService {
    /// Revokes access for `request.scope`: refused from the commit on, and every stream it
    /// covers is cut (on every replica) within a second.
    pub async fn revoke(
        &self,
        caller: Caller<'_>,
        request: RevocationRequest,
        route: &'static str,
        client: &Client,
    ) -> Result<RevocationRow, DeliveryError> {
        let inner = &self.inner;
        self.check(caller, Action::RevokeAccess, route, client)
            .await?;
        let reason = request.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(DeliveryError::BadRequest(format!(
                "reason must be 1 to {MAX_REASON_CHARS} characters"
            )));
        }
        let (release, file) = self.scope_exists(request.scope).await?;
        let row = RevocationRow {
            id: Uuid::new_v4(),
            scope: request.scope,
            reason: reason.to_owned(),
            created_by: caller_text(caller),
            created_at: inner.clock.now(),
            lifted_by: None,
            lifted_at: None,
        };
        let event = AccessEvent::new(
            caller_actor(caller),
            Logged::AccessRevoked,
            Target::Revocation {
                id: row.id,
                release,
                file,
            },
            Outcome::Succeeded,
        )
        .with_reason(scope_reason(request.scope))
        .with_client(client);
        let mut tx = inner.db.begin_write().await?;
        downloads::insert_revocation(&mut tx, &row).await?;
        inner
            .audit
            .record(&mut tx, &event)
            .await
            .map_err(|_| DeliveryError::Unavailable("the access log"))?;
        AccessSignals::notify_in(inner.db.backend(), &mut tx, request.scope).await?;
        tx.commit().await?;
        inner.signals.raise(request.scope);
        Ok(row)
    }

    /// Lifts a revocation in force.
    pub async fn lift(
        &self,
        caller: Caller<'_>,
        id: Uuid,
        route: &'static str,
        client: &Client,
    ) -> Result<RevocationRow, DeliveryError> {
        let inner = &self.inner;
        self.check(caller, Action::LiftRevocation, route, client)
            .await?;
        let row = downloads::revocation(&inner.db, id)
            .await?
            .ok_or(DeliveryError::NotFound)?;
        if row.lifted_at.is_some() {
            return Err(DeliveryError::BadRequest(
                "the revocation was already lifted".into(),
            ));
        }
        let (release, file) = self.scope_exists(row.scope).await?;
        let event = AccessEvent::new(
            caller_actor(caller),
            Logged::RevocationLifted,
            Target::Revocation { id, release, file },
            Outcome::Succeeded,
        )
        .with_client(client);
        let mut tx = inner.db.begin_write().await?;
        let now = inner.clock.now();
        let by = caller_text(caller);
        if !downloads::lift_revocation(&mut tx, id, &by, now).await? {
            return Err(DeliveryError::BadRequest(
                "the revocation was already lifted".into(),
            ));
        }
        inner
            .audit
            .record(&mut tx, &event)
            .await
            .map_err(|_| DeliveryError::Unavailable("the access log"))?;
        tx.commit().await?;
        Ok(RevocationRow {
            lifted_by: Some(by),
            lifted_at: Some(now),
            ..row
        })
    }

    /// Every revocation, newest first.
    pub async fn revocations(
        &self,
        caller: Caller<'_>,
        route: &'static str,
        client: &Client,
    ) -> Result<Vec<RevocationRow>, DeliveryError> {
        self.check(caller, Action::ListRevocations, route, client)
            .await?;
        Ok(downloads::revocations(&self.inner.db).await?)
    }

    /// A person is decided on by `auth::authorize` (a denial logged); the operator's shell,
    /// which holds the server's own configuration, acts as the system.
    async fn check(
        &self,
        caller: Caller<'_>,
        action: Action,
        route: &'static str,
        client: &Client,
    ) -> Result<(), DeliveryError> {
        if let Caller::Person(principal) = caller {
            self.inner
                .auth
                .check(principal, action, &Resource::Revocations, route, client)
                .await?;
        }
        Ok(())
    }

    /// Checks that what a scope names exists; returns the release and file it concerns.
    async fn scope_exists(
        &self,
        scope: RevocationScope,
    ) -> Result<(Option<Uuid>, Option<Uuid>), DeliveryError> {
        let db = &self.inner.db;
        let missing =
            |what: &str| DeliveryError::BadRequest(format!("no {what} has id {}", scope.id()));
        match scope {
            RevocationScope::User(id) => {
                users::find_by_id(db, UserId(id))
                    .await?
                    .ok_or_else(|| missing("user"))?;
                Ok((None, None))
            }
            RevocationScope::Organization(id) => {
                users::find_org(db, &id.to_string())
                    .await?
                    .ok_or_else(|| missing("organization"))?;
                Ok((None, None))
            }
            RevocationScope::Release(id) => {
                self.inner
                    .releases
                    .record(ReleaseId(id))
                    .await?
                    .ok_or_else(|| missing("release"))?;
                Ok((Some(id), None))
            }
            RevocationScope::File(id) => {
                let (release, _) = extracts::file(db, id)
                    .await?
                    .ok_or_else(|| missing("file"))?;
                Ok((Some(release), Some(id)))
            }
        }
    }
}

fn caller_actor(caller: Caller<'_>) -> Actor {
    match caller {
        Caller::Person(p) => Actor::User(p.user_id.0),
        Caller::System => Actor::System,
    }
}

fn caller_text(caller: Caller<'_>) -> String {
    match caller {
        Caller::Person(p) => p.user_id.to_string(),
        Caller::System => "system".to_owned(),
    }
}

/// The log's reason for a revocation: its kind of scope (the director's own words stay with the
/// revocation).
fn scope_reason(scope: RevocationScope) -> Reason {
    Reason::new(match scope {
        RevocationScope::User(_) => "access revoked for a user",
        RevocationScope::Organization(_) => "access revoked for an organization",
        RevocationScope::Release(_) => "access revoked for a release",
        RevocationScope::File(_) => "access revoked for a file",
    })
}
