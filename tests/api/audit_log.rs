use std::collections::HashSet;

use steward::audit::{chain, AccessEvent, Action, Actor, Outcome, Reason, Target};

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;

on_both_databases!(
    concurrent_appends_form_one_chain,
    database_refuses_update_and_delete
);

const WRITERS: usize = 8;
const APPENDS_PER_WRITER: usize = 500;

async fn concurrent_appends_form_one_chain(db: Db) {
    let app = spawn_app(db).await;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let audit = app.state.audit.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..APPENDS_PER_WRITER {
                let event = AccessEvent::new(
                    Actor::User(uuid::Uuid::from_u128(
                        (writer * APPENDS_PER_WRITER + i) as u128,
                    )),
                    Action::SchemaMigrated,
                    Target::Schema(i as i64),
                    Outcome::Succeeded,
                )
                .with_reason(Reason::new("concurrency test"));
                audit.append(&event).await.expect("append succeeds");
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let records = app.state.audit.records_after(0, 1_000_000).await.unwrap();
    // The server's own start event may land among them; count the writers' records.
    let written = records
        .iter()
        .filter(|r| r.action == "schema_migrated")
        .count();
    assert_eq!(written, WRITERS * APPENDS_PER_WRITER);
    assert_eq!(chain::verify(&records), Ok(records.len() as u64));
    let actors: HashSet<_> = records.iter().map(|r| r.actor.clone()).collect();
    assert!(
        actors.len() >= WRITERS * APPENDS_PER_WRITER,
        "every append is its own record"
    );
}

async fn database_refuses_update_and_delete(db: Db) {
    let app = spawn_app(db).await;
    app.state
        .audit
        .append(&AccessEvent::new(
            Actor::System,
            Action::SchemaMigrated,
            Target::Schema(1),
            Outcome::Succeeded,
        ))
        .await
        .unwrap();
    let pool = app.state.db.pool();
    let update = sqlx::query("UPDATE access_log SET outcome = 'denied'")
        .execute(pool)
        .await;
    let err = update.expect_err("UPDATE must be refused").to_string();
    assert!(err.contains("append-only"), "{err}");
    let delete = sqlx::query("DELETE FROM access_log").execute(pool).await;
    let err = delete.expect_err("DELETE must be refused").to_string();
    assert!(err.contains("append-only"), "{err}");
    if db == Db::Postgres {
        let truncate = sqlx::query("TRUNCATE access_log").execute(pool).await;
        assert!(truncate.is_err(), "TRUNCATE must be refused");
        // Issue 12, finding 8: an upsert is an UPDATE, refused.
        let upsert = sqlx::query(
            "INSERT INTO access_log SELECT * FROM access_log \
             ON CONFLICT (seq) DO UPDATE SET outcome = 'denied'",
        )
        .execute(pool)
        .await;
        assert!(upsert.is_err(), "ON CONFLICT DO UPDATE must be refused");
    } else {
        // Issue 12, finding 8: on SQLite `INSERT OR REPLACE` rewrote and deleted records.
        for statement in [
            "INSERT OR REPLACE INTO access_log SELECT * FROM access_log",
            "REPLACE INTO access_log SELECT * FROM access_log",
        ] {
            let replaced = sqlx::query(statement).execute(pool).await;
            let err = replaced
                .expect_err("a replacing insert must be refused")
                .to_string();
            assert!(err.contains("append-only"), "{statement}: {err}");
        }
    }
    let records = app.state.audit.records_after(0, 100).await.unwrap();
    assert!(records.iter().all(|r| r.outcome == "succeeded"));
    assert_eq!(chain::verify(&records), Ok(records.len() as u64));
}
