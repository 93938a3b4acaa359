//! Issue 11: a change and its access event commit together or not at all. A trigger makes the
//! event's insert fail, as a full disk or a lost connection would between the change and its
//! event; the change must not stand either.

use serde_json::json;
use steward::domain::role::Role;

use crate::helpers::{spawn_app_configured, Db, Store, TestApp};
use crate::on_both_databases;
use crate::release_support::{
    call, executed_level_one, expect, level_one_request, people, status_of,
};

on_both_databases!(
    a_release_transition_fails_with_its_event,
    a_job_start_fails_with_its_event,
    an_account_change_fails_with_its_event
);

/// Makes every insert of an event with `action` fail from now on.
pub async fn fail_events(app: &TestApp, db: Db, action: &str) {
    let pool = app.state.db.pool();
    match db {
        Db::Sqlite => {
            sqlx::query(&format!(
                "CREATE TRIGGER injected_failure BEFORE INSERT ON access_events \
                 WHEN NEW.action = '{action}' BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
        Db::Postgres => {
            sqlx::raw_sql(&format!(
                "CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.action = '{action}' THEN RAISE EXCEPTION 'injected failure'; END IF; \
                 RETURN NEW; END; $$; \
                 CREATE TRIGGER injected_failure BEFORE INSERT ON access_events \
                 FOR EACH ROW EXECUTE FUNCTION injected_failure();"
            ))
            .execute(pool)
            .await
            .unwrap();
        }
    }
}

async fn count(app: &TestApp, sql: &str, bind: &str) -> i64 {
    sqlx::Row::get(
        &sqlx::query(sql)
            .bind(bind)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap(),
        "n",
    )
}

async fn a_release_transition_fails_with_its_event(db: Db) {
    let app = crate::helpers::spawn_app(db).await;
    let p = people(&app).await;
    let created = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_one_request()),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let history = "SELECT COUNT(*) AS n FROM release_history WHERE release_id = $1";
    let entries = count(&app, history, &id).await;
    fail_events(&app, db, "release_transitioned").await;
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/releases/{id}/submit"),
        &p.requester.1,
        None,
    )
    .await;
    assert!(
        status >= 500,
        "the failed event fails the request: {status}"
    );
    assert_eq!(
        status_of(&app, &id, &p.requester.1).await,
        "draft",
        "the transition did not stand"
    );
    assert_eq!(
        count(&app, history, &id).await,
        entries,
        "no history entry without its event"
    );
}

async fn a_job_start_fails_with_its_event(db: Db) {
    let app = spawn_app_configured(db, Store::Fs, &[("STEWARD_JOBS__RUN_IN_SERVE", "false")]).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0901").await;
    fail_events(&app, db, "job_started").await;
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/releases/{id}/extract"),
        &p.it.1,
        None,
    )
    .await;
    assert!(status >= 500, "{status}");
    assert_eq!(
        status_of(&app, &id, &p.it.1).await,
        "dua_executed",
        "the release did not move"
    );
    let jobs = "SELECT COUNT(*) AS n FROM jobs WHERE release_id = $1";
    assert_eq!(count(&app, jobs, &id).await, 0, "no job was queued");
    // With the log healthy again, the same start succeeds: nothing was left half done.
    let drop = match db {
        Db::Postgres => "DROP TRIGGER injected_failure ON access_events",
        Db::Sqlite => "DROP TRIGGER injected_failure",
    };
    sqlx::query(drop)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/releases/{id}/extract"),
        &p.it.1,
        None,
    )
    .await;
    assert_eq!(status, 202);
}

async fn an_account_change_fails_with_its_event(db: Db) {
    let app = crate::helpers::spawn_app(db).await;
    let admin = app.create_user("admin2", "Agency", &[Role::Admin]).await;
    let session = app.login(&admin).await;
    let user = app
        .create_user("target", "Agency", &[Role::Recipient])
        .await;
    fail_events(&app, db, "roles_changed").await;
    let response = app
        .call(
            "PUT",
            &format!("/api/v1/admin/users/{}/roles", user.id),
            Some(&session.access_token),
            Some(&json!({ "roles": ["privacy_officer"] })),
        )
        .await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let roles =
        "SELECT COUNT(*) AS n FROM user_roles WHERE user_id = $1 AND role = 'privacy_officer'";
    assert_eq!(
        count(&app, roles, &user.id.to_string()).await,
        0,
        "the roles did not change"
    );
}
