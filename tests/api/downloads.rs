//! Issue 13: downloads. A named recipient lists the files of an available release, asks for a
//! link, and fetches it with their own sign-in, resuming with ranges; every refusal has its
//! status and its event; the limit counts whole files (ranges summed) and holds against
//! concurrent starts; the start fails closed; a revocation cuts a stream mid-file.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::download_support::{
    app_with_source, available, dua, dua_naming, events_for, fetch, last_refusal, link,
    link_response, setup, stored,
};
use crate::helpers::{Db, Store};
use crate::on_both_databases;
use crate::release_support::{expect, people};

on_both_databases!(
    a_named_user_downloads_resumes_and_uses_up_the_limit,
    every_bad_request_is_refused_with_its_status_and_event,
    revocations_destruction_and_the_duas_terms_refuse_downloads,
    concurrent_starts_cannot_exceed_the_limit,
    the_start_fails_closed_when_its_event_cannot_be_written,
    a_revocation_cuts_a_stream_mid_file,
);

async fn a_named_user_downloads_resumes_and_uses_up_the_limit(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let (p, release, file) = setup(&app, 2).await;
    let files_path = format!("/api/v1/releases/{release}/files");
    let listed = expect(&app, "GET", &files_path, &p.requester.1, None, 200).await;
    let data = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == file.as_str())
        .expect("the data file is listed");
    assert_eq!(data["downloads_left"], 2);
    assert_eq!(data["kind"], "data");
    let expected = stored(&app, &file).await;
    assert_eq!(data["ciphertext_bytes"], expected.len());
    // Staff see the files, not a count: the DUA does not name them.
    let staff = expect(&app, "GET", &files_path, &p.director.1, None, 200).await;
    assert!(staff[0].get("downloads_left").is_none());
    expect(&app, "GET", &files_path, &p.outsider.1, None, 403).await;

    // One whole download.
    let path = link(&app, &p.requester.1, &file).await;
    let response = fetch(&app, &p.requester.1, &path, None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(
        headers["content-length"],
        expected.len().to_string().as_str()
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&expected));
    assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        expected.as_slice()
    );
    let completed = events_for(&app, &file, "download_completed", 1).await;
    assert_eq!(completed[0].bytes, Some(expected.len() as i64));
    assert_eq!(completed[0].release_id.as_deref(), Some(release.as_str()));
    assert_eq!(completed[0].dua_number.as_deref(), Some("DUA-2026-0701"));
    assert_eq!(
        events_for(&app, &file, "download_started", 1).await.len(),
        1
    );

    // A second download in two ranges (a resume) costs one download, not two.
    let size = expected.len();
    let first = fetch(&app, &p.requester.1, &path, Some("bytes=0-99")).await;
    assert_eq!(first.status(), 206);
    assert_eq!(
        first.headers()["content-range"],
        format!("bytes 0-99/{size}").as_str()
    );
    let mut joined = first.bytes().await.unwrap().to_vec();
    let rest = fetch(&app, &p.requester.1, &path, Some("bytes=100-")).await;
    assert_eq!(rest.status(), 206);
    joined.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(joined, expected, "the ranges join into the file");
    events_for(&app, &file, "download_completed", 3).await;
    let listed = expect(&app, "GET", &files_path, &p.requester.1, None, 200).await;
    let left = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == file.as_str())
        .unwrap()["downloads_left"]
        .clone();
    assert_eq!(left, 0);

    // The limit is reached: no new link, and the old one answers 429 with its event.
    let refused = link_response(&app, &p.requester.1, &file, json!({})).await;
    assert_eq!(refused.status(), 429);
    let after = app.last_seq().await;
    let again = fetch(&app, &p.requester.1, &path, Some("bytes=0-0")).await;
    assert_eq!(again.status(), 429);
    assert_eq!(
        last_refusal(&app, after).await,
        "the DUA's download limit for this file is reached"
    );

    // Issue 11: who holds this release, from the log: the requester, two whole copies of the
    // data file in three transfers, from this address.
    let report = format!("/api/v1/access-log/reports/holders?release={release}");
    let holders = expect(&app, "GET", &report, &p.privacy.1, None, 200).await;
    let holding = holders["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["file_id"] == file.as_str())
        .expect("the data file's holder");
    assert_eq!(holding["user_id"], p.requester.0.id.to_string().as_str());
    assert_eq!(holding["bytes_received"], 2 * size);
    assert_eq!(holding["file_bytes"], size);
    assert_eq!(holding["whole"], true);
    assert_eq!(holding["completed_transfers"], 3);
    assert_eq!(holding["client_addrs"], "127.0.0.1");
    expect(&app, "GET", &report, &p.requester.1, None, 403).await;
    let bad = "/api/v1/access-log/reports/holders?release=nope";
    expect(&app, "GET", bad, &p.privacy.1, None, 400).await;
}

/// The token with the first character of its signature changed.
fn flip_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { "B" } else { "A" };
    format!("{signed}.{first}{}", &signature[1..])
}

/// A JWT with the given header and claims and a signature that is not one.
fn forged(header: &Value, claims: &Value) -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!("{}.{}.c2lnbmF0dXJl", b64(header), b64(claims))
}

async fn every_bad_request_is_refused_with_its_status_and_event(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    let both = dua_naming(
        "DUA-2026-0705",
        &p,
        &[&p.requester.0, &p.colleague.0],
        3,
        &[],
    );
    let (_release, file) = available(&app, &p, &both).await;
    let path = link(&app, &p.requester.1, &file).await;
    let token = path.strip_prefix("/dl/").unwrap().to_owned();
    let size = stored(&app, &file).await.len();

    // The link needs the same user's own sign-in: none is 401, another user's is 403.
    let anonymous = app.get(&path).await;
    assert_eq!(anonymous.status(), 401);
    let after = app.last_seq().await;
    let other = fetch(&app, &p.colleague.1, &path, None).await;
    assert_eq!(other.status(), 403);
    assert_eq!(
        last_refusal(&app, after).await,
        "the download link was issued to another user",
        "the colleague is named by the DUA, but the link is the requester's"
    );
    let after = app.last_seq().await;
    let outsider = fetch(&app, &p.outsider.1, &path, None).await;
    assert_eq!(outsider.status(), 403);
    assert_eq!(
        last_refusal(&app, after).await,
        "no role of the user grants this action"
    );

    // Every bad token is 401 with its reason logged.
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap();
    let mut other_file = claims.clone();
    other_file["fid"] = json!(uuid::Uuid::new_v4().to_string());
    let resigned_body = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&other_file).unwrap()),
        parts[2]
    );
    let cases: Vec<(String, &str)> = vec![
        ("garbage".into(), "malformed token"),
        (flip_signature(&token), "bad signature"),
        (resigned_body, "bad signature"),
        (
            forged(&json!({"alg": "none", "typ": "JWT"}), &claims),
            "unsigned token (alg none)",
        ),
        (
            forged(&json!({"alg": "HS256", "kid": header["kid"]}), &claims),
            "algorithm not allowed",
        ),
        (
            forged(
                &json!({"alg": "EdDSA", "kid": header["kid"], "jku": "https://evil.example/keys"}),
                &claims,
            ),
            "key-location header refused",
        ),
        (
            forged(&json!({"alg": "EdDSA", "kid": "nope"}), &claims),
            "unknown key id",
        ),
        // A session token is not a link.
        (p.requester.1.access_token.clone(), "malformed token"),
    ];
    for (bad, reason) in cases {
        let after = app.last_seq().await;
        let response = fetch(&app, &p.requester.1, &format!("/dl/{bad}"), None).await;
        assert_eq!(response.status(), 401, "{reason}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_link");
        assert_eq!(last_refusal(&app, after).await, reason);
    }
    // Links signed with the server's own key but wrong in one claim.
    let now = time::macros::datetime!(2026-03-01 12:00 UTC);
    let signed = |edit: &dyn Fn(&mut steward::auth::tokens::DownloadClaims)| {
        let mut claims = steward::auth::tokens::DownloadClaims::new(
            "steward",
            p.requester.0.id.0,
            file.parse().unwrap(),
            claims["rel"].as_str().unwrap().parse().unwrap(),
            None,
            now,
            now + time::Duration::hours(1),
        );
        claims.iss = app.state.settings.auth.issuer.clone();
        edit(&mut claims);
        app.state.auth.keyring().sign(&claims).unwrap()
    };
    for (bad, reason) in [
        (signed(&|c| c.iss = "someone-else".into()), "wrong issuer"),
        (signed(&|c| c.aud = "steward-api".into()), "wrong audience"),
        (
            signed(&|c| c.nbf = (now + time::Duration::hours(1)).unix_timestamp()),
            "token not yet valid",
        ),
    ] {
        let after = app.last_seq().await;
        let response = fetch(&app, &p.requester.1, &format!("/dl/{bad}"), None).await;
        assert_eq!(response.status(), 401, "{reason}");
        assert_eq!(last_refusal(&app, after).await, reason);
    }
    // A valid link to a file that does not exist (or no longer does): 404, logged.
    let nowhere = signed(&|c| c.fid = uuid::Uuid::new_v4());
    let after = app.last_seq().await;
    let response = fetch(&app, &p.requester.1, &format!("/dl/{nowhere}"), None).await;
    assert_eq!(response.status(), 404);
    assert_eq!(last_refusal(&app, after).await, "the file no longer exists");

    // Paths that try to leave the route never reach a file.
    for bad in [
        "/dl/..",
        "/dl/..%2F..%2Fapi%2Fv1%2Fme",
        "/dl/%2e%2e",
        "/dl/a/b",
        "/dl/",
    ] {
        let status = fetch(&app, &p.requester.1, bad, None).await.status();
        assert!(status == 401 || status == 404, "{bad}: {status}");
    }

    // Ranges: one range resumes; everything else is 416 with its event.
    let satisfiable = format!("bytes */{size}");
    for (range, content_range) in [
        ("bytes=-0", Some(satisfiable.as_str())),
        ("bytes=5-2", Some(satisfiable.as_str())),
        (
            &format!("bytes={size}-") as &str,
            Some(satisfiable.as_str()),
        ),
        ("bytes=0-0,2-3", None),
        ("bytes=99999999999999999999-", None),
        ("bytes=junk", None),
        ("bytes=", None),
    ] {
        let after = app.last_seq().await;
        let response = fetch(&app, &p.requester.1, &path, Some(range)).await;
        assert_eq!(response.status(), 416, "{range}");
        assert_eq!(
            response
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap()),
            content_range,
            "{range}"
        );
        assert_eq!(
            last_refusal(&app, after).await,
            "the Range header was refused"
        );
    }

    // A link bound to the address it was asked from works from there.
    let bound = link_response(&app, &p.requester.1, &file, json!({"bind_address": true})).await;
    assert_eq!(bound.status(), 201);
    let bound: Value = bound.json().await.unwrap();
    assert_eq!(bound["bound_to"], "127.0.0.1");
    let ok = fetch(
        &app,
        &p.requester.1,
        bound["url"].as_str().unwrap(),
        Some("bytes=0-0"),
    )
    .await;
    assert_eq!(ok.status(), 206);
    // Lifetimes beyond the maximum and unknown fields are refused.
    for body in [
        json!({"ttl_secs": 0}),
        json!({"ttl_secs": 3601}),
        json!({"ttl": 5}),
    ] {
        let response = link_response(&app, &p.requester.1, &file, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    // A link for a file that does not exist is refused like one that is not the caller's.
    let unknown = link_response(
        &app,
        &p.requester.1,
        &uuid::Uuid::new_v4().to_string(),
        json!({}),
    )
    .await;
    assert_eq!(unknown.status(), 403);

    // An expired link: ten minutes and a little more later.
    app.clock.advance(time::Duration::seconds(601 + 60));
    let after = app.last_seq().await;
    let expired = fetch(&app, &p.requester.1, &path, None).await;
    assert_eq!(expired.status(), 401);
    assert_eq!(last_refusal(&app, after).await, "token expired");
}

async fn revocations_destruction_and_the_duas_terms_refuse_downloads(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    // A DUA that allows only a network the test client is not in.
    let (_, fenced) = available(&app, &p, &dua("DUA-2026-0702", &p, 3, &["192.0.2.0/24"])).await;
    let after = app.last_seq().await;
    let response = link_response(&app, &p.requester.1, &fenced, json!({})).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        last_refusal(&app, after).await,
        "the client address is outside the DUA's allowed networks"
    );

    let (release, file) = available(&app, &p, &dua("DUA-2026-0703", &p, 3, &[])).await;
    let path = link(&app, &p.requester.1, &file).await;
    // Each scope of revocation refuses; lifting it gives access back. Only the director
    // revokes.
    let revoke = |scope: &str, id: String| json!({"scope": scope, "id": id, "reason": "Audit finding 2026-17"});
    let denied = app
        .call(
            "POST",
            "/api/v1/revocations",
            Some(&p.privacy.1.access_token),
            Some(&revoke("user", p.requester.0.id.to_string())),
        )
        .await;
    assert_eq!(denied.status(), 403);
    let org = app.org(crate::release_support::UNIVERSITY).await;
    for (scope, id) in [
        ("user", p.requester.0.id.to_string()),
        ("organization", org.to_string()),
        ("release", release.clone()),
        ("file", file.clone()),
    ] {
        let made = expect(
            &app,
            "POST",
            "/api/v1/revocations",
            &p.director.1,
            Some(&revoke(scope, id)),
            201,
        )
        .await;
        let after = app.last_seq().await;
        let response = fetch(&app, &p.requester.1, &path, None).await;
        assert_eq!(response.status(), 403, "{scope}");
        assert_eq!(last_refusal(&app, after).await, "access is revoked");
        let refused = link_response(&app, &p.requester.1, &file, json!({})).await;
        assert_eq!(refused.status(), 403, "{scope}");
        let lift = format!("/api/v1/revocations/{}/lift", made["id"].as_str().unwrap());
        let lifted = expect(&app, "POST", &lift, &p.director.1, None, 200).await;
        assert!(lifted["lifted_at"].is_string());
        expect(&app, "POST", &lift, &p.director.1, None, 400).await;
        let response = fetch(&app, &p.requester.1, &path, Some("bytes=0-0")).await;
        assert_eq!(response.status(), 206, "{scope} lifted");
    }
    let listed = expect(&app, "GET", "/api/v1/revocations", &p.privacy.1, None, 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 4);
    let log = app.events_after(0).await;
    assert_eq!(
        log.iter().filter(|r| r.action == "access_revoked").count(),
        4
    );
    assert_eq!(
        log.iter()
            .filter(|r| r.action == "revocation_lifted")
            .count(),
        4
    );
    // Bad revocations change nothing.
    for body in [
        json!({"scope": "planet", "id": file, "reason": "x"}),
        json!({"scope": "file", "id": "nope", "reason": "x"}),
        json!({"scope": "file", "id": uuid::Uuid::new_v4().to_string(), "reason": "x"}),
        json!({"scope": "file", "id": file, "reason": "  "}),
        json!({"scope": "file", "id": file}),
    ] {
        let response = app
            .call(
                "POST",
                "/api/v1/revocations",
                Some(&p.director.1.access_token),
                Some(&body),
            )
            .await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let listed = expect(&app, "GET", "/api/v1/revocations", &p.director.1, None, 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 4);

    // Destruction: a link issued before the demand answers 410 after it, and no new link is
    // issued.
    let (doomed, doomed_file) = available(&app, &p, &dua("DUA-2026-0704", &p, 3, &[])).await;
    let doomed_path = link(&app, &p.requester.1, &doomed_file).await;
    let base = format!("/api/v1/releases/{doomed}");
    expect(
        &app,
        "POST",
        &format!("{base}/revoke"),
        &p.director.1,
        None,
        200,
    )
    .await;
    let after = app.last_seq().await;
    let response = fetch(&app, &p.requester.1, &doomed_path, None).await;
    assert_eq!(response.status(), 403, "revoked: not available");
    assert_eq!(
        last_refusal(&app, after).await,
        "the release is not available for download"
    );
    expect(
        &app,
        "POST",
        &format!("{base}/destruction"),
        &p.director.1,
        Some(&json!({"reason": "Study ended", "deadline": "2026-12-31"})),
        201,
    )
    .await;
    let after = app.last_seq().await;
    let response = fetch(&app, &p.requester.1, &doomed_path, None).await;
    assert_eq!(response.status(), 410);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "gone");
    assert_eq!(
        last_refusal(&app, after).await,
        "destruction of the release's data has been demanded"
    );
    let response = link_response(&app, &p.requester.1, &doomed_file, json!({})).await;
    assert_eq!(response.status(), 410);

    // After the DUA's end: a link issued minutes before it is refused minutes after.
    app.clock.set(time::macros::datetime!(2026-12-31 23:57 UTC));
    let session = app.login(&p.requester.0).await;
    let last_minute = link(&app, &session, &file).await;
    app.clock.set(time::macros::datetime!(2027-01-01 00:01 UTC));
    let after = app.last_seq().await;
    let response = fetch(&app, &session, &last_minute, None).await;
    assert_eq!(response.status(), 403);
    let reason = last_refusal(&app, after).await;
    assert!(
        reason == "the DUA has expired" || reason == "the release is not available for download",
        "{reason}"
    );
}

async fn concurrent_starts_cannot_exceed_the_limit(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let (p, _release, file) = setup(&app, 2).await;
    let path = link(&app, &p.requester.1, &file).await;
    let expected = stored(&app, &file).await;
    let attempts = (0..10).map(|_| {
        let request = app
            .client
            .get(format!("{}{path}", app.url))
            .bearer_auth(&p.requester.1.access_token);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            (status, body)
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let served: Vec<_> = results.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(
        served.len(),
        2,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(served
        .iter()
        .all(|(_, body)| body.as_ref() == expected.as_slice()));
    assert!(results.iter().all(|(s, _)| *s == 200 || *s == 429));
}

async fn the_start_fails_closed_when_its_event_cannot_be_written(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let (p, _release, file) = setup(&app, 2).await;
    let path = link(&app, &p.requester.1, &file).await;
    crate::audit_atomic::fail_events(&app, db, "download_started").await;
    let response = fetch(&app, &p.requester.1, &path, None).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unavailable");
    let transfers: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) AS n FROM download_transfers")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap(),
        "n",
    );
    assert_eq!(transfers, 0, "no reservation without its event");
    let log = app.events_after(0).await;
    assert!(!log.iter().any(|r| r.action == "download_started"));
}

async fn a_revocation_cuts_a_stream_mid_file(db: Db) {
    // The periodic re-check is far away, so only the signal can cut within the test; and the
    // request timeout is short, so a long download shows it is not cut by it.
    let app = app_with_source(
        db,
        Store::Fs,
        &[
            ("STEWARD_DOWNLOADS__RECHECK_SECS", "600"),
            ("STEWARD_SERVER__REQUEST_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let (p, _release, file) = setup(&app, 2).await;
    let size = crate::download_support::make_large(&app, &file, 48 << 20).await;
    let path = link(&app, &p.requester.1, &file).await;
    let response = fetch(&app, &p.requester.1, &path, None).await;
    assert_eq!(response.status(), 200);
    let mut body = response;
    let mut received = 0usize;
    // Read slowly past the request timeout.
    let slow_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < slow_until {
        received += body.chunk().await.unwrap().unwrap().len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(received > 0 && (received as u64) < size);
    expect(
        &app,
        "POST",
        "/api/v1/revocations",
        &p.director.1,
        Some(&json!({"scope": "file", "id": file, "reason": "Stop at once"})),
        201,
    )
    .await;
    let revoked_at = Instant::now();
    let mut cut = false;
    loop {
        match body.chunk().await {
            Ok(Some(bytes)) => received += bytes.len(),
            Ok(None) => break,
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    let latency = revoked_at.elapsed();
    assert!(cut || (received as u64) < size, "the stream ended early");
    assert!((received as u64) < size, "{received} of {size}");
    assert!(
        latency < Duration::from_secs(10),
        "cut by the signal, not the re-check: {latency:?}"
    );
    let events = events_for(&app, &file, "download_cut", 1).await;
    assert_eq!(events[0].reason.as_deref(), Some("access is revoked"));
    assert!(events[0].bytes.unwrap() < size as i64);
}
