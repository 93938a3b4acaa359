//! The access log as the system of record (issue 11): concurrent appends integrate into one
//! chain and tree, the tables refuse change, a sequencer that dies mid-round loses and doubles
//! nothing, and the verifier finds tampering done in the database itself.

use std::collections::HashSet;

use steward::audit::verify::{self, DatabaseLog, Expectations, Problem};
use steward::audit::{AccessEvent, Action, Actor, AuditError, Outcome, Reason, Target};

use crate::helpers::{spawn_app, Db, TestApp};
use crate::on_both_databases;

on_both_databases!(
    concurrent_appends_form_one_chain,
    database_refuses_update_and_delete,
    a_sequencer_killed_mid_round_loses_and_doubles_nothing,
    tampering_in_the_database_is_found_and_located,
    checkpoints_are_exported_and_compared
);

const WRITERS: usize = 8;
const APPENDS_PER_WRITER: usize = 250;

fn event(i: usize) -> AccessEvent {
    AccessEvent::new(
        Actor::User(uuid::Uuid::from_u128(i as u128)),
        Action::SchemaMigrated,
        Target::Schema(i as i64),
        Outcome::Succeeded,
    )
    .with_reason(Reason::new("concurrency test"))
}

/// What `steward audit verify` checks, for the app's own key and no export.
pub fn expectations(app: &TestApp) -> Expectations {
    Expectations {
        verifier_key: app.state.sequencer.signer().verifier_key(),
        exported: Vec::new(),
        trusted: None,
        integrate_before: "0000".into(),
    }
}

async fn verify_app(app: &TestApp) -> Result<verify::Verified, Problem> {
    verify::verify_log(
        &mut DatabaseLog::open(&app.state.db).await.unwrap(),
        &expectations(app),
    )
    .await
    .expect("the log can be read")
}

async fn concurrent_appends_form_one_chain(db: Db) {
    let app = spawn_app(db).await;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let audit = app.state.audit.clone();
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..APPENDS_PER_WRITER {
                ids.push(
                    audit
                        .append(&event(writer * APPENDS_PER_WRITER + i))
                        .await
                        .expect("append"),
                );
            }
            ids
        }));
    }
    // The sequencer integrates while the writers append.
    let sequencer = app.state.sequencer.clone();
    let integrating = tokio::spawn(async move {
        for _ in 0..20 {
            sequencer.integrate().await.expect("round");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let mut ids = HashSet::new();
    for writer in writers {
        ids.extend(writer.await.unwrap());
    }
    integrating.await.unwrap();
    assert_eq!(
        ids.len(),
        WRITERS * APPENDS_PER_WRITER,
        "every append has its own id"
    );
    let size = app.state.sequencer.integrate_all().await.unwrap();
    let records = app.state.audit.records_after(0, 1_000_000).await.unwrap();
    assert_eq!(records.len() as u64, size, "every event has a position");
    let seqs: HashSet<_> = records.iter().map(|r| r.seq.unwrap()).collect();
    assert_eq!(seqs.len() as u64, size);
    let verified = verify_app(&app).await.expect("the log verifies");
    assert_eq!(verified.records, size);
}

async fn database_refuses_update_and_delete(db: Db) {
    let app = spawn_app(db).await;
    app.state.audit.append(&event(1)).await.unwrap();
    app.state.sequencer.integrate_all().await.unwrap();
    app.state.sequencer.checkpoint_now().await.unwrap();
    let pool = app.state.db.pool();
    for (table, column) in [
        ("access_events", "outcome"),
        ("access_log", "hash"),
        ("access_log_checkpoints", "note"),
    ] {
        let update = sqlx::query(&format!("UPDATE {table} SET {column} = 'x'"))
            .execute(pool)
            .await;
        let err = update.expect_err("UPDATE must be refused").to_string();
        assert!(err.contains("append-only"), "{table}: {err}");
        let delete = sqlx::query(&format!("DELETE FROM {table}"))
            .execute(pool)
            .await;
        let err = delete.expect_err("DELETE must be refused").to_string();
        assert!(err.contains("append-only"), "{table}: {err}");
        if db == Db::Postgres {
            let truncate = sqlx::query(&format!("TRUNCATE {table} CASCADE"))
                .execute(pool)
                .await;
            assert!(truncate.is_err(), "TRUNCATE {table} must be refused");
        } else {
            for statement in [
                format!("INSERT OR REPLACE INTO {table} SELECT * FROM {table}"),
                format!("REPLACE INTO {table} SELECT * FROM {table}"),
            ] {
                let err = sqlx::query(&statement)
                    .execute(pool)
                    .await
                    .expect_err("a replacing insert must be refused")
                    .to_string();
                assert!(err.contains("append-only"), "{statement}: {err}");
            }
        }
    }
    let frozen = sqlx::query("INSERT INTO access_log_v1 (seq, at, actor, action, target, outcome, prev_hash, hash) VALUES (1, 'a', 'a', 'a', 'a', 'a', 'a', 'a')")
        .execute(pool)
        .await;
    assert!(frozen.is_err(), "the frozen v1 log takes no record");
    verify_app(&app).await.expect("the log still verifies");
}

/// An app whose own sequencer runs once at start and then waits an hour, so a test drives
/// the rounds itself.
async fn spawn_quiet_app(db: Db) -> TestApp {
    crate::helpers::spawn_app_configured(
        db,
        crate::helpers::Store::Fs,
        &[("STEWARD_AUDIT__SEQUENCER_INTERVAL_MS", "3600000")],
    )
    .await
}

async fn a_sequencer_killed_mid_round_loses_and_doubles_nothing(db: Db) {
    let app = spawn_quiet_app(db).await;
    for i in 0..300 {
        app.state.audit.append(&event(i)).await.unwrap();
    }
    let before = app.state.sequencer.integrate_all().await.unwrap();
    for i in 300..600 {
        app.state.audit.append(&event(i)).await.unwrap();
    }
    // The round writes its records, tree hashes and checkpoint, then dies before committing.
    let died = app
        .state
        .sequencer
        .integrate_with(|n| {
            assert!(n > 0, "the round had work");
            Err(AuditError::Tree("killed".into()))
        })
        .await;
    assert!(died.is_err());
    let records = app.state.audit.records_after(0, 1_000_000).await.unwrap();
    let integrated = records.iter().filter(|r| r.seq.is_some()).count() as u64;
    assert_eq!(integrated, before, "nothing of the dead round remains");
    verify_app(&app)
        .await
        .expect("the log verifies after the crash");
    let after = app.state.sequencer.integrate_all().await.unwrap();
    assert_eq!(after, before + 300);
    let records = app.state.audit.records_after(0, 1_000_000).await.unwrap();
    assert!(records.iter().all(|r| r.seq.is_some()), "nothing lost");
    let seqs: HashSet<_> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), records.len(), "nothing doubled");
    assert_eq!(verify_app(&app).await.expect("verifies").records, after);
}

/// Turns the append-only triggers off, as an attacker with the database's owner role could.
async fn disable_triggers(app: &TestApp, db: Db) {
    let pool = app.state.db.pool();
    match db {
        Db::Postgres => {
            for table in ["access_events", "access_log", "access_log_checkpoints"] {
                sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
        Db::Sqlite => {
            let rows = sqlx::query(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%_v2_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for row in rows {
                let name: String = sqlx::Row::get(&row, "name");
                sqlx::query(&format!("DROP TRIGGER {name}"))
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }
}

async fn tampering_in_the_database_is_found_and_located(db: Db) {
    // No sequencer round of the app's own may run between the tampering and the check (it
    // would integrate the events whose records were removed again).
    let app = spawn_quiet_app(db).await;
    for i in 0..120 {
        app.state.audit.append(&event(i)).await.unwrap();
    }
    let size = app.state.sequencer.integrate_all().await.unwrap();
    app.state.sequencer.checkpoint_now().await.unwrap();
    verify_app(&app).await.expect("intact");
    disable_triggers(&app, db).await;
    let pool = app.state.db.pool();
    let target = 57;
    let event_id: i64 = sqlx::Row::get(
        &sqlx::query("SELECT event_id FROM access_log WHERE seq = $1")
            .bind(target)
            .fetch_one(pool)
            .await
            .unwrap(),
        "event_id",
    );
    // One changed column of one event: located at its position.
    sqlx::query("UPDATE access_events SET outcome = 'denied' WHERE id = $1")
        .bind(event_id)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        verify_app(&app).await,
        Err(Problem::Content { position: target })
    );
    sqlx::query("UPDATE access_events SET outcome = 'succeeded' WHERE id = $1")
        .bind(event_id)
        .execute(pool)
        .await
        .unwrap();
    verify_app(&app).await.expect("restored");
    // The tail removed: the checkpoint covers more than the log holds.
    sqlx::query("DELETE FROM access_log WHERE seq > $1")
        .bind(size as i64 - 5)
        .execute(pool)
        .await
        .unwrap();
    let problem = verify_app(&app).await.unwrap_err();
    assert!(
        matches!(problem, Problem::CheckpointBeyondLog { .. }),
        "{problem:?}"
    );
}

async fn checkpoints_are_exported_and_compared(db: Db) {
    let app = spawn_quiet_app(db).await;
    for i in 0..10 {
        app.state.audit.append(&event(i)).await.unwrap();
    }
    app.state.sequencer.integrate_all().await.unwrap();
    let checkpoint = app.state.sequencer.checkpoint_now().await.unwrap();
    let dir = app.state.settings.checkpoint_export_dir();
    let exported = std::fs::read(dir.join("checkpoint")).expect("newest checkpoint exported");
    assert_eq!(exported, checkpoint.note.as_bytes());
    let mut expect = expectations(&app);
    expect.exported = verify::read_export_dir(&dir).unwrap();
    assert!(
        expect.exported.len() >= 2,
        "the newest and its numbered copy"
    );
    verify::verify_log(
        &mut DatabaseLog::open(&app.state.db).await.unwrap(),
        &expect,
    )
    .await
    .unwrap()
    .expect("the export agrees");
    // An exported checkpoint the database lacks: someone removed it there.
    let other = app
        .state
        .sequencer
        .signer()
        .sign(3, tlog_tiles::Hash([9; 32]));
    expect.exported.push(("forged".into(), other));
    let problem = verify::verify_log(
        &mut DatabaseLog::open(&app.state.db).await.unwrap(),
        &expect,
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(problem, Problem::CheckpointDisagreement { size: 3, .. }),
        "{problem:?}"
    );
}

on_both_databases!(the_verify_command_reports_by_exit_code);

/// Runs `steward audit ARGS` against the app's data directory and database.
pub fn steward_audit(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("audit")
        .args(args)
        .env("STEWARD_DATA_DIR", &app.state.settings.data_dir)
        .env("STEWARD_DATABASE__URL", app.database_url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

async fn the_verify_command_reports_by_exit_code(db: Db) {
    let app = spawn_quiet_app(db).await;
    for i in 0..40 {
        app.state.audit.append(&event(i)).await.unwrap();
    }
    app.state.sequencer.integrate_all().await.unwrap();
    let checkpoint = app.state.sequencer.checkpoint_now().await.unwrap();
    let ok = steward_audit(&app, &["verify"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("access log verified"), "{stdout}");
    let key = String::from_utf8(steward_audit(&app, &["key"]).stdout).unwrap();
    assert!(key.starts_with("steward.local/access-log+"), "{key}");
    let shown: serde_json::Value =
        serde_json::from_slice(&steward_audit(&app, &["key", "--json"]).stdout).unwrap();
    assert_eq!(shown["verifier_key"], key.trim());
    let verified = steward_audit(&app, &["verify", "--json"]);
    assert_eq!(verified.status.code(), Some(0));
    let verified: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["verified"], true);
    assert!(verified["records"].as_u64().unwrap() >= 40, "{verified}");
    assert_eq!(verified["root"].as_str().unwrap().len(), 64);

    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted.checkpoint");
    std::fs::write(&trusted, &checkpoint.note).unwrap();
    let with_trusted = steward_audit(
        &app,
        &["verify", "--from-checkpoint", trusted.to_str().unwrap()],
    );
    assert_eq!(with_trusted.status.code(), Some(0));

    // Bad input: a malformed key, a truncated checkpoint, a checkpoint of another origin.
    let bad_key = steward_audit(&app, &["verify", "--key", "nonsense+00000000+AAAA"]);
    assert_eq!(
        bad_key.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad_key.stderr)
    );
    std::fs::write(&trusted, &checkpoint.note[..checkpoint.note.len() / 2]).unwrap();
    let truncated = steward_audit(
        &app,
        &["verify", "--from-checkpoint", trusted.to_str().unwrap()],
    );
    assert_eq!(truncated.status.code(), Some(2));
    let elsewhere = steward::audit::checkpoint::CheckpointSigner::new(
        "other.example/log",
        app.state.signer.signing_key(),
    )
    .sign(checkpoint.size, tlog_tiles::Hash([0; 32]));
    std::fs::write(&trusted, &elsewhere).unwrap();
    let other_origin = steward_audit(
        &app,
        &["verify", "--from-checkpoint", trusted.to_str().unwrap()],
    );
    assert_eq!(other_origin.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other_origin.stderr).contains("trusted.checkpoint"));

    // A changed record: exit 1, and the position is named.
    disable_triggers(&app, db).await;
    sqlx::query("UPDATE access_events SET reason = 'nothing happened' WHERE id = (SELECT event_id FROM access_log WHERE seq = 7)")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let failed = steward_audit(&app, &["verify"]);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("position 7"), "{stdout}");
    let failed = steward_audit(&app, &["verify", "--json"]);
    assert_eq!(failed.status.code(), Some(1));
    let failed: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(failed["verified"], false);
    assert!(
        failed["problem"].as_str().unwrap().contains("position 7"),
        "{failed}"
    );
}
