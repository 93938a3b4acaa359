//! Destruction demands end to end, on both databases and both object stores: build, download,
//! demand; afterwards nothing of the release is in the store, its wrapped identity is gone,
//! a ciphertext copied aside before can no longer be decrypted by the server, downloads
//! answer 410, the certificate verifies (offline too), and the recipient's attestation is
//! checked against the access log before the release becomes `destroyed`. Then the erase job
//! killed at each step, and the demand that the DUA's end makes.

use std::io::Read;

use serde_json::{json, Value};
use steward::clock::Clock;
use steward::db::extracts;
use steward::destruction::certificate::{self, SignedCertificate};
use steward::destruction::EraseStep;
use steward::domain::release::ReleaseId;
use steward::jobs::{JobState, RunOutcome};
use steward::storage::KeyPrefix;

use crate::audit_atomic::fail_events;
use crate::download_support::{
    app_with_source, available, dua_naming, events_for, fetch, link, stored,
};
use crate::helpers::{Db, Store, TestApp};
use crate::on_both_databases;
use crate::release_support::{call, executed_level_one, expect, people, status_of, People};

/// Runs a test once per database and object store.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::helpers::{Db, Store};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_fs() {
                super::$name(Db::Sqlite, Store::Fs).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_s3() {
                super::$name(Db::Sqlite, Store::S3).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_fs() {
                if crate::helpers::postgres_url(concat!(module_path!(), "::postgres_fs")).is_some() {
                    super::$name(Db::Postgres, Store::Fs).await
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_s3() {
                if crate::helpers::postgres_url(concat!(module_path!(), "::postgres_s3")).is_some() {
                    super::$name(Db::Postgres, Store::S3).await
                }
            }
        }
    )*};
}

on_every_backend!(a_demand_erases_certifies_and_ends_with_the_attestation);
on_both_databases!(
    releases_demanded_before_demands_were_recorded_get_one,
    an_erase_job_killed_at_any_step_finishes_with_the_same_certificate,
    the_shell_demands_destruction_and_writes_the_certificate,
    the_dua_end_demands_destruction_and_overdue_demands_are_reminded,
);

/// An organization name in Vietnamese, Polish and Greek.
const UNICODE_NAME: &str = "Đại học Y Hà Nội – Uniwersytet Łódzki – Πανεπιστήμιο Αθηνών";

fn demand_body(deadline: &str) -> Value {
    json!({ "reason": "The study closed early", "deadline": deadline })
}

/// Runs the next queued job with the application's own executor (extract and erase).
async fn run_next_job(app: &TestApp) -> RunOutcome {
    steward::app::extract_runner(&app.state, "test-runner".into())
        .run_once()
        .await
        .unwrap()
}

async fn certificate_file(app: &TestApp, id: &str, session: &crate::helpers::Session) -> Vec<u8> {
    let response = app
        .call(
            "GET",
            &format!("/api/v1/releases/{id}/destruction/certificate"),
            Some(&session.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

async fn object_keys(app: &TestApp, id: &str) -> Vec<String> {
    let prefix = KeyPrefix::parse(&format!("releases/{id}/")).unwrap();
    let mut keys: Vec<String> = app
        .state
        .store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_owned())
        .collect();
    keys.sort();
    keys
}

fn decrypts(ciphertext: &[u8], identity: &dyn age::Identity) -> bool {
    let Ok(decryptor) = age::Decryptor::new(ciphertext) else {
        return false;
    };
    let Ok(mut reader) = decryptor.decrypt(std::iter::once(identity)) else {
        return false;
    };
    let mut plaintext = Vec::new();
    reader.read_to_end(&mut plaintext).is_ok()
}

/// The master identity as it sits in its file: everything the server holds that decrypts.
fn master_identity(app: &TestApp) -> age::x25519::Identity {
    let text = std::fs::read_to_string(app.state.settings.master_identity_path()).unwrap();
    text.lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .parse()
        .unwrap()
}

fn attestation(users: &[&crate::helpers::TestUser], all: bool) -> Value {
    json!({
        "users": users.iter().map(|u| json!({
            "user": u.id.to_string(),
            "destroyed_on": "2026-03-01",
            "method": "cryptographic_erase",
        })).collect::<Vec<_>>(),
        "all_copies_destroyed": all,
    })
}

/// A release available to the requester and the colleague (the requester responsible), each
/// of whom downloads: the requester the whole data file, the colleague its first bytes.
async fn downloaded(app: &TestApp, p: &People, number: &str) -> (String, String) {
    let terms = dua_naming(number, p, &[&p.requester.0, &p.colleague.0], 3, &[]);
    let (id, file) = available(app, p, &terms).await;
    let whole = link(app, &p.requester.1, &file).await;
    let response = fetch(app, &p.requester.1, &whole, None).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    let part = link(app, &p.colleague.1, &file).await;
    let response = fetch(app, &p.colleague.1, &part, Some("bytes=0-99")).await;
    assert_eq!(response.status(), 206);
    response.bytes().await.unwrap();
    events_for(app, &file, "download_completed", 2).await;
    (id, file)
}

async fn a_demand_erases_certifies_and_ends_with_the_attestation(db: Db, store: Store) {
    let app = app_with_source(db, store, &[]).await;
    let p = people(&app).await;
    let (id, file) = downloaded(&app, &p, "DUA-2026-0801").await;
    let base = format!("/api/v1/releases/{id}/destruction");
    let release: ReleaseId = id.parse().unwrap();
    let files = extracts::files(&app.state.db, release.0).await.unwrap();
    let keys_before = object_keys(&app, &id).await;
    assert!(keys_before.len() >= files.len(), "{keys_before:?}");

    // The ciphertext copied aside, and proof that the server could decrypt it before.
    let aside = stored(&app, &file).await;
    let wrapped = extracts::wrapped_key(&app.state.db, release.0)
        .await
        .unwrap()
        .expect("a wrapped release identity");
    let release_identity = app.state.master.unwrap(&wrapped.wrapped).unwrap();
    assert!(decrypts(&aside, release_identity.identity()));
    let old_link = link(&app, &p.requester.1, &file).await;

    // Refused, changing nothing: an attestation before the demand, a demand by anyone but the
    // director, without a deadline or with one in the past, and for a release never offered.
    let (status, body) = call(
        &app,
        "POST",
        &format!("{base}/attestation"),
        &p.requester.1,
        Some(&attestation(&[&p.requester.0, &p.colleague.0], true)),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("attestation_refused"))
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("no destruction has been demanded"));
    for session in [&p.privacy.1, &p.requester.1, &p.it.1] {
        let (status, _) = call(
            &app,
            "POST",
            &base,
            session,
            Some(&demand_body("2026-04-30")),
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, body) = call(
        &app,
        "POST",
        &base,
        &p.director.1,
        Some(&json!({"reason": "x"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &app,
        "POST",
        &base,
        &p.director.1,
        Some(&demand_body("2026-02-01")),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let never = executed_level_one(&app, &p, "DUA-2026-0802").await;
    let (status, body) = call(
        &app,
        "POST",
        &format!("/api/v1/releases/{never}/destruction"),
        &p.director.1,
        Some(&demand_body("2026-04-30")),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("illegal_transition")),
        "{body}"
    );
    expect(
        &app,
        "POST",
        &format!("/api/v1/releases/{never}/revoke"),
        &p.director.1,
        None,
        200,
    )
    .await;
    let (status, body) = call(
        &app,
        "POST",
        &format!("/api/v1/releases/{never}/destruction"),
        &p.director.1,
        Some(&demand_body("2026-04-30")),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("never_available")),
        "{body}"
    );
    assert_eq!(status_of(&app, &id, &p.director.1).await, "available");

    // A demand whose event cannot be written changes nothing: no status, revocation, job or
    // demand.
    fail_events(&app, db, "destruction_demanded").await;
    let (status, _) = call(
        &app,
        "POST",
        &base,
        &p.director.1,
        Some(&demand_body("2026-04-30")),
    )
    .await;
    assert_eq!(status, 503);
    drop_injected_failure(&app, db).await;
    assert_eq!(status_of(&app, &id, &p.director.1).await, "available");
    assert!(steward::db::destruction::find(&app.state.db, release.0)
        .await
        .unwrap()
        .is_none());
    let revocations = expect(&app, "GET", "/api/v1/revocations", &p.director.1, None, 200).await;
    assert!(revocations.as_array().unwrap().is_empty(), "{revocations}");
    assert!(app
        .state
        .jobs
        .list(Some(release.0))
        .await
        .unwrap()
        .iter()
        .all(|j| j.kind != steward::jobs::JobKind::Destroy));

    // The names people have print as written on the certificate: the organization's, as the
    // erase job records it.
    sqlx::query("UPDATE organizations SET name = $1 WHERE name = $2")
        .bind(UNICODE_NAME)
        .bind(crate::release_support::UNIVERSITY)
        .execute(app.state.db.pool())
        .await
        .unwrap();

    // Two demands at once: one wins, the other is told so.
    let body = demand_body("2026-04-30");
    let (first, second) = tokio::join!(
        call(&app, "POST", &base, &p.director.1, Some(&body)),
        call(&app, "POST", &base, &p.director.1, Some(&body)),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{first:?} {second:?}");
    assert_eq!(
        status_of(&app, &id, &p.director.1).await,
        "destruction_demanded"
    );

    // From the demand on: downloads answer 410, and no link is issued.
    let response = fetch(&app, &p.requester.1, &old_link, None).await;
    assert_eq!(response.status(), 410);
    let response = app
        .call(
            "POST",
            &format!("/api/v1/files/{file}/links"),
            Some(&p.requester.1.access_token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(response.status(), 410);
    let (status, body) = call(
        &app,
        "GET",
        &format!("{base}/certificate"),
        &p.director.1,
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_certified_yet"))
    );
    let (status, _) = call(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}/files"),
        &p.requester.1,
        None,
    )
    .await;
    assert_eq!(status, 410, "the file list too");
    // A member of the organization sees the demand, not who holds data nor the reason.
    let seen = expect(&app, "GET", &base, &p.colleague.1, None, 200).await;
    assert_eq!(seen["holders"], json!([]));
    assert_eq!(seen["reason"], "");
    let (status, _) = call(&app, "GET", &base, &p.outsider.1, None).await;
    assert_eq!(status, 403);

    // The erase job: not IT's to cancel or retry.
    let jobs = app.state.jobs.list(Some(release.0)).await.unwrap();
    let erase = jobs
        .iter()
        .find(|j| j.kind == steward::jobs::JobKind::Destroy)
        .expect("an erase job is queued");
    for action in ["cancel", "retry"] {
        let (status, body) = call(
            &app,
            "POST",
            &format!("/api/v1/jobs/{}/{action}", erase.id),
            &p.it.1,
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("erasing_job")),
            "{body}"
        );
    }
    match run_next_job(&app).await {
        RunOutcome::Ran {
            state: JobState::Succeeded,
            ..
        } => {}
        other => panic!("the erase job did not succeed: {other:?}"),
    }
    assert!(
        object_keys(&app, &id).await.is_empty(),
        "no object of the release is left"
    );
    assert!(extracts::wrapped_key(&app.state.db, release.0)
        .await
        .unwrap()
        .is_none());
    let left: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM release_keys WHERE release_id = $1")
            .bind(&id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap(),
        "n",
    );
    assert_eq!(left, 0);
    // Every identity the server still holds fails on the copy.
    assert!(!decrypts(&aside, &master_identity(&app)));

    // The certificate: verifies with the server's key, names every object and the key.
    let file_bytes = certificate_file(&app, &id, &p.director.1).await;
    let public = app.state.signer.public_hex();
    let cert = certificate::verify(&file_bytes, &public).expect("the certificate verifies");
    assert_eq!(cert.release.to_string(), id);
    assert_eq!(cert.dua.as_deref(), Some("DUA-2026-0801"));
    assert_eq!(cert.keys_erased, vec![wrapped.recipient.clone()]);
    let certified: Vec<String> = cert.objects.iter().map(|o| o.key.clone()).collect();
    assert_eq!(certified, keys_before);
    for f in &files {
        let o = cert.objects.iter().find(|o| o.key == f.object_key).unwrap();
        assert_eq!(
            (o.sha256.as_str(), o.bytes as i64),
            (f.ciphertext_sha256.as_str(), f.ciphertext_bytes)
        );
    }
    assert!(
        cert.log_checkpoint.contains('\n'),
        "a signed checkpoint note"
    );
    let mut altered = file_bytes.clone();
    let at = String::from_utf8_lossy(&altered).find("\"bytes\"").unwrap() + 10;
    altered[at] = if altered[at] == b'9' { b'8' } else { b'9' };
    assert!(certificate::verify(&altered, &public).is_err());
    // Offline, with the command a recipient runs.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("destruction.json");
    let bad = dir.path().join("altered.json");
    std::fs::write(&good, &file_bytes).unwrap();
    std::fs::write(&bad, &altered).unwrap();
    let verify = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["verify", "certificate"])
            .arg(path)
            .args(["--key", &public])
            .output()
            .unwrap()
    };
    let ok = verify(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(verify(&bad).status.code(), Some(1));
    // The recipient organization gets it too (JSON and PDF); another organization does not.
    assert_eq!(
        certificate_file(&app, &id, &p.requester.1).await,
        file_bytes
    );
    let (status, _) = call(
        &app,
        "GET",
        &format!("{base}/certificate"),
        &p.outsider.1,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let response = app
        .call(
            "GET",
            &format!("{base}/certificate.pdf"),
            Some(&p.privacy.1.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let pdf = response.bytes().await.unwrap();
    if let Some(text) = steward::pdf::tests_support::pdftotext(&pdf) {
        assert!(text.contains(&id), "{text}");
        assert!(text.contains(UNICODE_NAME), "{text}");
    }
    assert_eq!(cert.organization, UNICODE_NAME);

    // Who must be attested: the two users the log shows downloading.
    let view = expect(&app, "GET", &base, &p.privacy.1, None, 200).await;
    let mut holders: Vec<&str> = view["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["user"].as_str().unwrap())
        .collect();
    holders.sort();
    let mut want = vec![p.requester.0.id.to_string(), p.colleague.0.id.to_string()];
    want.sort();
    assert_eq!(holders, want);
    assert_eq!(view["certificate_issued"], true);

    // Attestations: only the responsible person's, covering exactly who downloaded.
    let attest = format!("{base}/attestation");
    let complete = attestation(&[&p.requester.0, &p.colleague.0], true);
    let (status, _) = call(&app, "POST", &attest, &p.colleague.1, Some(&complete)).await;
    assert_eq!(status, 403, "not the responsible person");
    for (body, says) in [
        (attestation(&[&p.requester.0], true), "not covered"),
        (
            attestation(&[&p.requester.0, &p.colleague.0, &p.outsider.0], true),
            "never downloaded",
        ),
        (
            attestation(&[&p.requester.0, &p.colleague.0], false),
            "all_copies_destroyed",
        ),
        (
            attestation(&[&p.requester.0, &p.requester.0, &p.colleague.0], true),
            "named twice",
        ),
    ] {
        let (status, json) = call(&app, "POST", &attest, &p.requester.1, Some(&body)).await;
        assert_eq!(status, 422, "{json}");
        assert!(json["message"].as_str().unwrap().contains(says), "{json}");
        assert_eq!(
            status_of(&app, &id, &p.director.1).await,
            "destruction_demanded"
        );
    }
    let mut future = complete.clone();
    future["users"][0]["destroyed_on"] = json!("2027-01-01");
    let (status, _) = call(&app, "POST", &attest, &p.requester.1, Some(&future)).await;
    assert_eq!(status, 422, "a destruction date in the future");
    expect(&app, "POST", &attest, &p.requester.1, Some(&complete), 200).await;
    assert_eq!(status_of(&app, &id, &p.director.1).await, "destroyed");
    let (status, _) = call(&app, "POST", &attest, &p.requester.1, Some(&complete)).await;
    assert_eq!(status, 409);

    // After destruction: 410, logged.
    let after = app.last_seq().await;
    let response = fetch(&app, &p.requester.1, &old_link, None).await;
    assert_eq!(response.status(), 410);
    assert_eq!(
        crate::download_support::last_refusal(&app, after).await,
        "the release's data has been destroyed"
    );

    // Every step is in the access log.
    let actions: Vec<String> = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|r| r.release_id.as_deref() == Some(id.as_str()))
        .map(|r| r.action)
        .collect();
    for action in [
        "destruction_demanded",
        "access_revoked",
        "destruction_planned",
        "release_key_erased",
        "release_objects_deleted",
        "destruction_certificate_issued",
        "destruction_certificate_read",
        "destruction_attestation_refused",
        "destruction_attested",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing: {actions:?}"
        );
    }
}

fn signed(row: &steward::db::destruction::DemandRow) -> SignedCertificate {
    SignedCertificate {
        certificate: serde_json::from_str(row.certificate_json.as_deref().unwrap()).unwrap(),
        signature: row.certificate_signature.clone().unwrap(),
    }
}

async fn drop_injected_failure(app: &TestApp, db: Db) {
    let sql = match db {
        Db::Sqlite => "DROP TRIGGER injected_failure",
        Db::Postgres => "DROP TRIGGER injected_failure ON access_events",
    };
    sqlx::query(sql).execute(app.state.db.pool()).await.unwrap();
}

async fn an_erase_job_killed_at_any_step_finishes_with_the_same_certificate(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    let service = &app.state.destruction;
    for (n, step) in [
        EraseStep::Planned,
        EraseStep::KeyErased,
        EraseStep::ObjectsDeleted,
        EraseStep::Certified,
    ]
    .into_iter()
    .enumerate()
    {
        let (id, _) = downloaded(&app, &p, &format!("DUA-2026-081{n}")).await;
        let release: ReleaseId = id.parse().unwrap();
        let keys_before = object_keys(&app, &id).await;
        let recipient = extracts::wrapped_key(&app.state.db, release.0)
            .await
            .unwrap()
            .unwrap()
            .recipient;
        expect(
            &app,
            "POST",
            &format!("/api/v1/releases/{id}/destruction"),
            &p.director.1,
            Some(&demand_body("2026-04-30")),
            201,
        )
        .await;
        // The job dies after `step`: what it recorded is all that is left of it.
        let at_kill = service.erase(release, Some(step)).await.unwrap();
        if step == EraseStep::KeyErased {
            // ... and in the middle of deleting objects: one is already gone.
            let key = steward::storage::ObjectKey::parse(&keys_before[0]).unwrap();
            app.state.store.delete(&key).await.unwrap();
        }
        app.clock.advance(time::Duration::minutes(1));
        // The retry: the queued job, run by a runner that knows nothing of the first attempt.
        match run_next_job(&app).await {
            RunOutcome::Ran {
                state: JobState::Succeeded,
                ..
            } => {}
            other => panic!("retry after {step:?}: {other:?}"),
        }
        let done = steward::db::destruction::find(&app.state.db, release.0)
            .await
            .unwrap()
            .unwrap();
        let certificate = signed(&done);
        let c = &certificate.certificate;
        let listed: Vec<String> = c.objects.iter().map(|o| o.key.clone()).collect();
        assert_eq!(
            listed, keys_before,
            "after {step:?}: every object, deleted before or not"
        );
        assert_eq!(c.keys_erased, vec![recipient.clone()]);
        if step >= EraseStep::KeyErased {
            assert_eq!(
                done.erased_at, at_kill.erased_at,
                "the erase time recorded before the kill"
            );
            assert_eq!(done.checkpoint, at_kill.checkpoint);
        }
        if step == EraseStep::Certified {
            assert_eq!(done.certificate_json, at_kill.certificate_json);
        }
        assert!(object_keys(&app, &id).await.is_empty());
        // Running again changes nothing: the same certificate, byte for byte.
        let again = service.erase(release, None).await.unwrap();
        assert_eq!(again.certificate_json, done.certificate_json);
        assert_eq!(again.certificate_signature, done.certificate_signature);
        certificate::verify(&certificate.to_file(), &app.state.signer.public_hex()).unwrap();
    }

    // Two runners erasing the same release at once (a lease taken over from a runner that
    // was only slow): both finish, with one certificate.
    let (id, _) = downloaded(&app, &p, "DUA-2026-0819").await;
    let release: ReleaseId = id.parse().unwrap();
    expect(
        &app,
        "POST",
        &format!("/api/v1/releases/{id}/destruction"),
        &p.director.1,
        Some(&demand_body("2026-04-30")),
        201,
    )
    .await;
    let (a, b) = tokio::join!(service.erase(release, None), service.erase(release, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.certificate_json.is_some());
    assert_eq!(a.certificate_json, b.certificate_json);
    assert!(object_keys(&app, &id).await.is_empty());
    let issued = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|r| {
            r.action == "destruction_certificate_issued"
                && r.release_id.as_deref() == Some(id.as_str())
        })
        .count();
    assert_eq!(issued, 1);
    // The queued job finds nothing left to do.
    assert!(matches!(
        run_next_job(&app).await,
        RunOutcome::Ran {
            state: JobState::Succeeded,
            ..
        }
    ));

    // A crash inside the certificate's transaction: nothing of it is kept, and the next
    // attempt issues the certificate the first one would have.
    let (id, _) = downloaded(&app, &p, "DUA-2026-0820").await;
    let release: ReleaseId = id.parse().unwrap();
    expect(
        &app,
        "POST",
        &format!("/api/v1/releases/{id}/destruction"),
        &p.director.1,
        Some(&demand_body("2026-04-30")),
        201,
    )
    .await;
    fail_events(&app, db, "destruction_certificate_issued").await;
    assert!(service.erase(release, None).await.is_err());
    let failed = steward::db::destruction::find(&app.state.db, release.0)
        .await
        .unwrap()
        .unwrap();
    assert!(failed.certificate_json.is_none() && failed.erased_at.is_some());
    drop_injected_failure(&app, db).await;
    app.clock.advance(time::Duration::minutes(1));
    let done = service.erase(release, None).await.unwrap();
    assert_eq!(done.erased_at, failed.erased_at);
    let c = signed(&done).certificate;
    assert_eq!(
        c.erased_at,
        steward::db::timestamp::encode(failed.erased_at.unwrap()).unwrap()
    );
}

async fn the_dua_end_demands_destruction_and_overdue_demands_are_reminded(db: Db) {
    let app = app_with_source(
        db,
        Store::Fs,
        &[("STEWARD_RELEASES__DESTRUCTION_DEMAND_ON_EXPIRY", "true")],
    )
    .await;
    let p = people(&app).await;
    let (id, _) = downloaded(&app, &p, "DUA-2026-0830").await;
    // A release whose files were never offered expires without a demand.
    let never = executed_level_one(&app, &p, "DUA-2026-0831").await;
    let service = &app.state.destruction;

    app.clock.set(time::macros::datetime!(2027-01-02 09:00 UTC));
    // Sessions ended with the clock jump.
    let director = app.login(&p.director.0).await;
    let privacy = app.login(&p.privacy.0).await;
    let report = service.tick(app.clock.now()).await.unwrap();
    let expired: Vec<String> = report.expired.iter().map(|r| r.to_string()).collect();
    assert!(
        expired.contains(&id) && expired.contains(&never),
        "{report:?}"
    );
    let demanded: Vec<String> = report.demanded.iter().map(|r| r.to_string()).collect();
    assert_eq!(demanded, vec![id.clone()]);
    assert_eq!(
        status_of(&app, &id, &director).await,
        "destruction_demanded"
    );
    assert_eq!(status_of(&app, &never, &director).await, "expired");
    let view = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}/destruction"),
        &privacy,
        None,
        200,
    )
    .await;
    // The DUA ended 2026-12-31 with 30 days for destruction.
    assert_eq!(view["deadline"], "2027-01-30");
    assert_eq!(view["demanded_by"], "system");
    assert_eq!(view["overdue"], false);

    // An erase job that ran out of attempts: the demand stays, and the scheduled round queues
    // the job again, until destruction is done.
    sqlx::query("UPDATE jobs SET state = 'failed' WHERE kind = 'destroy' AND release_id = $1")
        .bind(&id)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let report = service.tick(app.clock.now()).await.unwrap();
    let resumed: Vec<String> = report.resumed.iter().map(|r| r.to_string()).collect();
    assert_eq!(resumed, vec![id.clone()]);
    assert!(
        service
            .tick(app.clock.now())
            .await
            .unwrap()
            .resumed
            .is_empty(),
        "one live job"
    );
    assert!(matches!(
        run_next_job(&app).await,
        RunOutcome::Ran {
            state: JobState::Succeeded,
            ..
        }
    ));
    let report = service.tick(app.clock.now()).await.unwrap();
    assert!(
        report.resumed.is_empty(),
        "certified demands are not resumed"
    );

    // Past the deadline without an attestation: one reminder a day, logged, and the report.
    app.clock.set(time::macros::datetime!(2027-01-31 08:00 UTC));
    let report = service.tick(app.clock.now()).await.unwrap();
    assert_eq!(report.reminded.len(), 1);
    let report = service.tick(app.clock.now()).await.unwrap();
    assert!(report.reminded.is_empty(), "once a day");
    app.clock.set(time::macros::datetime!(2027-02-01 08:00 UTC));
    assert_eq!(
        service.tick(app.clock.now()).await.unwrap().reminded.len(),
        1
    );
    let reminders = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|r| {
            r.action == "destruction_overdue" && r.release_id.as_deref() == Some(id.as_str())
        })
        .count();
    assert_eq!(reminders, 2);
    let session = app.login(&p.privacy.0).await;
    let report = expect(
        &app,
        "GET",
        "/api/v1/access-log/reports/overdue-destructions",
        &session,
        None,
        200,
    )
    .await;
    let listed = report["releases"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{report}");
    assert_eq!(listed[0]["release_id"], id.as_str());
    assert_eq!(listed[0]["server_erased"], true);
    let view = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}/destruction"),
        &session,
        None,
        200,
    )
    .await;
    assert_eq!(view["overdue"], true);
}

async fn the_shell_demands_destruction_and_writes_the_certificate(db: Db) {
    use crate::release_cli::run;
    let app = app_with_source(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    let (id, _) = downloaded(&app, &p, "DUA-2026-0840").await;
    // The shell runs on the real clock: the deadline is checked against today.
    let (ok, _, err) = run(
        &app,
        &[
            "release",
            "destroy",
            &id,
            "--reason",
            "Closed",
            "--deadline",
            "2020-01-01",
        ],
    );
    assert!(!ok && err.contains("deadline"), "{err}");
    let (ok, out, err) = run(
        &app,
        &[
            "release",
            "destroy",
            &id,
            "--reason",
            "Closed",
            "--deadline",
            "2099-01-01",
        ],
    );
    assert!(!ok && err.contains("deadline"), "too far: {out}{err}");
    let deadline = (time::OffsetDateTime::now_utc().date() + time::Duration::days(30)).to_string();
    let (ok, out, err) = run(
        &app,
        &[
            "release",
            "destroy",
            &id,
            "--reason",
            "Closed",
            "--deadline",
            &deadline,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("all access revoked"), "{out}");
    let (ok, _, err) = run(
        &app,
        &[
            "release",
            "destroy",
            &id,
            "--reason",
            "Again",
            "--deadline",
            &deadline,
        ],
    );
    assert!(!ok && err.contains("already been demanded"), "{err}");
    let (ok, out, err) = run(&app, &["release", "destruction", &id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("key erased:     no") && out.contains(&p.colleague.0.id.to_string()),
        "{out}"
    );
    let (ok, out, err) = run(&app, &["release", "destruction", &id, "--json"]);
    assert!(ok, "{err}");
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["release"], id.as_str());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("destruction.json");
    let (ok, _, err) = run(
        &app,
        &[
            "release",
            "certificate",
            &id,
            "--out",
            json.to_str().unwrap(),
        ],
    );
    assert!(!ok && err.contains("not issued yet"), "{err}");

    // The job the shell queued runs after the shell's (real) now.
    app.clock
        .set(time::OffsetDateTime::now_utc() + time::Duration::seconds(1));
    assert!(matches!(
        run_next_job(&app).await,
        RunOutcome::Ran {
            state: JobState::Succeeded,
            ..
        }
    ));
    let (ok, out, err) = run(
        &app,
        &[
            "release",
            "certificate",
            &id,
            "--out",
            json.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("destruction.pdf"), "{out}");
    assert!(std::fs::read(dir.path().join("destruction.pdf"))
        .unwrap()
        .starts_with(b"%PDF-"));
    let public = app.state.signer.public_hex();
    let (ok, out, err) = run(
        &app,
        &[
            "verify",
            "certificate",
            json.to_str().unwrap(),
            "--key",
            &public,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("certificate verified"), "{out}");
    let (ok, _, err) = run(
        &app,
        &[
            "verify",
            "certificate",
            json.to_str().unwrap(),
            "--key",
            "abc",
        ],
    );
    assert!(!ok && err.contains("64 hex digits"), "{err}");
}

/// Migration 0012's backfill: a release that older code moved to `destruction_demanded` (no
/// demand row, no revocation) gets both, so the erase job runs for it.
async fn releases_demanded_before_demands_were_recorded_get_one(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    let (id, _) = downloaded(&app, &p, "DUA-2026-0850").await;
    let pool = app.state.db.pool();
    // What the old `demand-destruction` left: the status and a history entry, nothing else.
    sqlx::query("UPDATE releases SET status = 'destruction_demanded' WHERE id = $1")
        .bind(&id)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO release_history (release_id, entry, at, actor, kind, from_status, to_status) \
         SELECT $1, MAX(entry) + 1, '2026-03-05T10:00:00.000000Z', 'system', 'demand_destruction', \
         'available', 'destruction_demanded' FROM release_history WHERE release_id = $1",
    )
    .bind(&id)
    .execute(pool)
    .await
    .unwrap();
    let backend = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    let migration = std::fs::read_to_string(format!(
        "{}/migrations/{backend}/0012_destruction.sql",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let backfill = &migration[migration.find("-- Releases moved to").unwrap()..];
    sqlx::raw_sql(backfill).execute(pool).await.unwrap();

    let release: ReleaseId = id.parse().unwrap();
    let demand = steward::db::destruction::find(&app.state.db, release.0)
        .await
        .unwrap()
        .expect("a demand was backfilled");
    // The DUA gives 30 days for destruction.
    assert_eq!(demand.deadline, "2026-04-04");
    assert_eq!(demand.demanded_by, "system");
    assert_eq!(demand.revocation, release.0);
    let revocations = expect(&app, "GET", "/api/v1/revocations", &p.director.1, None, 200).await;
    assert!(
        revocations
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["scope"] == "release" && r["scope_id"] == id.as_str()),
        "{revocations}"
    );
    // The scheduled round queues its erase job, which runs to the certificate.
    let report = app.state.destruction.tick(app.clock.now()).await.unwrap();
    assert!(report.resumed.contains(&release), "{report:?}");
    assert!(matches!(
        run_next_job(&app).await,
        RunOutcome::Ran {
            state: JobState::Succeeded,
            ..
        }
    ));
    assert!(object_keys(&app, &id).await.is_empty());
}
