//! The access signal: "the terms of access changed for this scope", raised by a revocation (and
//! by any change that ends a release's availability) so that every stream it concerns re-checks
//! its authorization at once. Within a process it is a broadcast channel; across replicas the
//! change's own transaction sends a PostgreSQL `NOTIFY`, delivered only if it commits, which
//! every replica's listener forwards into its own channel. A lost notification costs at most
//! one periodic re-check interval (each stream also re-checks on a timer).

use std::str::FromStr;

use sqlx::AnyConnection;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::downloads::RevocationScope;
use super::{Backend, Database, DbError};

/// The PostgreSQL channel.
const CHANNEL: &str = "steward_access";

/// Signals in flight per process before a slow stream misses some (it then re-checks anyway).
const CAPACITY: usize = 1024;

/// The process's access signal.
#[derive(Debug, Clone)]
pub struct AccessSignals {
    sender: broadcast::Sender<RevocationScope>,
}

impl Default for AccessSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl AccessSignals {
    /// A signal with no listener yet.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self { sender }
    }

    /// Receives every signal raised from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RevocationScope> {
        self.sender.subscribe()
    }

    /// Raises a signal in this process (after the change committed).
    pub fn raise(&self, scope: RevocationScope) {
        // No receiver is not an error: nothing is streaming.
        let _ = self.sender.send(scope);
    }

    /// Sends the signal to every other replica when the caller's transaction commits
    /// (PostgreSQL; SQLite has one process, which [`raise`](Self::raise) covers).
    pub async fn notify_in(
        backend: Backend,
        tx: &mut AnyConnection,
        scope: RevocationScope,
    ) -> Result<(), DbError> {
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(encode(scope))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Forwards other replicas' notifications into this process's signal until the process
    /// ends (PostgreSQL only; returns at once on SQLite). The listener reconnects by itself;
    /// what is sent while it is away is caught by the streams' periodic re-check.
    pub async fn listen(self, db: Database) {
        let mut listener = loop {
            match db.postgres_listener(CHANNEL).await {
                Ok(Some(listener)) => break listener,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "access signal listener cannot connect; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        loop {
            match listener.recv().await {
                Ok(notification) => match decode(notification.payload()) {
                    Some(scope) => self.raise(scope),
                    None => tracing::warn!("ignored a malformed access notification"),
                },
                Err(error) => {
                    tracing::warn!(%error, "access signal listener lost its connection");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }
}

fn encode(scope: RevocationScope) -> String {
    format!("{}:{}", scope.kind(), scope.id())
}

fn decode(payload: &str) -> Option<RevocationScope> {
    let (kind, id) = payload.split_once(':')?;
    RevocationScope::from_parts(kind, Uuid::from_str(id).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_survives_the_notification_payload() {
        let id = Uuid::new_v4();
        for scope in [
            RevocationScope::User(id),
            RevocationScope::Organization(id),
            RevocationScope::Release(id),
            RevocationScope::File(id),
        ] {
            assert_eq!(decode(&encode(scope)), Some(scope));
        }
        assert_eq!(decode("user"), None);
        assert_eq!(decode("planet:00000000-0000-0000-0000-000000000000"), None);
        assert_eq!(decode("user:nope"), None);
    }
}
