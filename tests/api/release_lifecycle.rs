//! End to end over HTTPS: a Level I and a Level III request taken to `dua_executed`, and every
//! refusal of issue 5's "Bad input" list shown to change nothing.

use serde_json::json;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;
use crate::release_support::{
    call, dua_body, expect, level_one_request, level_three_request, people, status_of,
};

on_both_databases!(
    level_one_request_to_dua_executed,
    level_three_request_needs_the_subcommittee,
    bad_requests_are_refused_at_submission,
    recipients_see_only_their_releases,
    dua_amendment_is_a_new_version,
    concurrent_transitions_apply_once,
);

async fn concurrent_transitions_apply_once(db: Db) {
    let app = spawn_app(db).await;
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
    let base = format!("/api/v1/releases/{id}");
    expect(
        &app,
        "POST",
        &format!("{base}/submit"),
        &p.requester.1,
        None,
        200,
    )
    .await;
    // Eight reviewers race to take it up and deny it: exactly one of each kind can win.
    let path_review = format!("{base}/review");
    let path_deny = format!("{base}/deny");
    let attempts = (0..8).map(|i| {
        let (path, session) = if i % 2 == 0 {
            (&path_review, &p.privacy.1)
        } else {
            (&path_deny, &p.director.1)
        };
        call(&app, "POST", path, session, None)
    });
    let results = futures_util::future::join_all(attempts).await;
    let won = results.iter().filter(|(status, _)| *status == 200).count();
    // Review then deny is the longest legal sequence from `submitted`.
    assert!((1..=2).contains(&won), "{results:?}");
    for (status, body) in &results {
        assert!(
            *status == 200 || *status == 409,
            "either applied or refused as a conflict: {status} {body}"
        );
    }
    let history = expect(
        &app,
        "GET",
        &format!("{base}/history"),
        &p.director.1,
        None,
        200,
    )
    .await;
    let history = history.as_array().unwrap();
    assert_eq!(
        history.len(),
        2 + won,
        "one history entry per applied change"
    );
    // Each applied change started from the state the previous one left.
    for pair in history.windows(2) {
        assert_eq!(pair[0]["to"], pair[1]["from"]);
    }
    let status = status_of(&app, &id, &p.director.1).await;
    assert!(status == "denied" || status == "in_review", "{status}");

    // The compare-and-swap itself: a change computed from a stale revision applies nowhere.
    let release_id: steward::domain::release::ReleaseId = id.parse().unwrap();
    let row = steward::db::releases::find(&app.state.db, release_id)
        .await
        .unwrap()
        .unwrap();
    let stale = steward::db::releases::Change {
        expected: row.status,
        revision: row.revision - 1,
        to: steward::domain::release::ReleaseStatus::Withdrawn,
        kind: "withdraw",
        actor: "system".into(),
        reason: None,
        at: time::OffsetDateTime::now_utc(),
        approved_elements: None,
        committee_json: None,
        approved_by: None,
        dua: None,
        letter: None,
    };
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let applied = steward::db::releases::apply(&mut conn, release_id, &stale)
        .await
        .unwrap();
    assert_eq!(applied, None);
    assert_eq!(status_of(&app, &id, &p.director.1).await, status);
}

/// The number of access-log events for release changes.
async fn release_events(app: &crate::helpers::TestApp) -> Vec<steward::audit::AccessRecord> {
    app.events_after(0)
        .await
        .into_iter()
        .filter(|r| r.target().starts_with("release:"))
        .collect()
}

async fn level_one_request_to_dua_executed(db: Db) {
    let app = spawn_app(db).await;
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
    assert_eq!(created["status"], "draft");
    assert_eq!(created["level"], "I");
    let id = created["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/releases/{id}");

    // Transition from the wrong state: a draft cannot be approved.
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        409,
    )
    .await;
    assert_eq!(refused["code"], "illegal_transition");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("draft"), "{message}");
    assert!(message.contains("submit, withdraw"), "{message}");
    assert_eq!(status_of(&app, &id, &p.director.1).await, "draft");

    // Only the requesting organization files it.
    expect(
        &app,
        "POST",
        &format!("{base}/submit"),
        &p.outsider.1,
        None,
        403,
    )
    .await;
    let json = expect(
        &app,
        "POST",
        &format!("{base}/submit"),
        &p.requester.1,
        Some(&json!({ "reason": "Ready for review" })),
        200,
    )
    .await;
    assert_eq!(json["status"], "submitted");
    // Submitting twice is a transition from the wrong state.
    let again = expect(
        &app,
        "POST",
        &format!("{base}/submit"),
        &p.requester.1,
        None,
        409,
    )
    .await;
    assert!(again["message"].as_str().unwrap().contains("submitted"));

    expect(
        &app,
        "POST",
        &format!("{base}/review"),
        &p.privacy.1,
        None,
        200,
    )
    .await;

    // Review narrows, never widens.
    let widen = json!({ "elements": ["med_elig.member_gender", "med_elig.payer_id"] });
    let refused = expect(
        &app,
        "PUT",
        &format!("{base}/elements"),
        &p.privacy.1,
        Some(&widen),
        422,
    )
    .await;
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("med_elig.payer_id"));
    let narrow = json!({
        "elements": ["med_elig.member_gender", "med_elig.year"],
        "reason": "State is not needed for the stated purpose"
    });
    let json = expect(
        &app,
        "PUT",
        &format!("{base}/elements"),
        &p.privacy.1,
        Some(&narrow),
        200,
    )
    .await;
    assert_eq!(
        json["approved_elements"],
        json!(["med_elig.member_gender", "med_elig.year"])
    );

    // Approval by the wrong role or by the requesting organization's own director.
    expect(&app, "POST", &format!("{base}/approve"), &p.it.1, None, 403).await;
    expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.privacy.1,
        None,
        403,
    )
    .await;
    let own = expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director_of_university.1,
        None,
        403,
    )
    .await;
    assert_eq!(own["code"], "forbidden");
    assert_eq!(status_of(&app, &id, &p.director.1).await, "in_review");
    let json = expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        200,
    )
    .await;
    assert_eq!(json["status"], "approved");
    assert_eq!(json["approved_by"], p.director.0.id.to_string());

    // DUA refusals: another organization's user, a user without a key, expiry before effective.
    let other_org = dua_body("DUA-2026-0001", &[&p.outsider.0], &p.requester.0);
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&other_org),
        422,
    )
    .await;
    assert_eq!(refused["code"], "dua_user_of_other_organization");
    let no_key = dua_body(
        "DUA-2026-0001",
        &[&p.requester.0, &p.no_key.0],
        &p.requester.0,
    );
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&no_key),
        422,
    )
    .await;
    assert_eq!(refused["code"], "dua_user_without_key");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains(&p.no_key.0.id.to_string()));
    let mut backwards = dua_body("DUA-2026-0001", &[&p.requester.0], &p.requester.0);
    backwards["expiry"] = json!("2026-02-01");
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&backwards),
        422,
    )
    .await;
    assert_eq!(refused["code"], "invalid_dua");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("not after the effective date"));
    // IT staff cannot record the DUA either.
    let good = dua_body(
        "DUA-2026-0001",
        &[&p.requester.0, &p.colleague.0],
        &p.requester.0,
    );
    expect(
        &app,
        "POST",
        &format!("{base}/dua"),
        &p.it.1,
        Some(&good),
        403,
    )
    .await;
    assert_eq!(status_of(&app, &id, &p.director.1).await, "approved");

    let json = expect(
        &app,
        "POST",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&good),
        200,
    )
    .await;
    assert_eq!(json["status"], "dua_executed");
    assert_eq!(json["dua"]["number"], "DUA-2026-0001");
    assert_eq!(json["dua"]["version"], 1);
    assert_eq!(json["dua"]["destruction_due"], "2027-01-30");
    // The number belongs to this release now.
    let history = expect(
        &app,
        "GET",
        &format!("{base}/history"),
        &p.privacy.1,
        None,
        200,
    )
    .await;
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "requested",
            "submit",
            "start_review",
            "narrowed",
            "approve",
            "execute_dua"
        ]
    );
    assert_eq!(history[1]["reason"], "Ready for review");
    assert_eq!(
        history[3]["reason"],
        "State is not needed for the stated purpose"
    );

    // Each change is one access-log event that names the history entry, never its text.
    let events = release_events(&app).await;
    let targets: Vec<String> = events.iter().map(|e| e.target().clone()).collect();
    for entry in 1..=6 {
        assert!(
            targets.contains(&format!("release:{id}#{entry}")),
            "event for entry {entry}: {targets:?}"
        );
    }
    assert!(events
        .iter()
        .all(|e| !e.reason.clone().unwrap_or_default().contains("Ready")));
    let approve = events
        .iter()
        .find(|e| e.target() == format!("release:{id}#5"))
        .unwrap();
    assert_eq!(approve.action, "release_transitioned");
    assert_eq!(approve.reason.as_deref(), Some("approve"));
    assert_eq!(approve.actor(), format!("user:{}", p.director.0.id));
}

async fn level_three_request_needs_the_subcommittee(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let created = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_three_request()),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/releases/{id}");
    expect(
        &app,
        "POST",
        &format!("{base}/submit"),
        &p.requester.1,
        None,
        200,
    )
    .await;
    expect(
        &app,
        "POST",
        &format!("{base}/review"),
        &p.director.1,
        None,
        200,
    )
    .await;

    // No recorded decision: refused.
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        409,
    )
    .await;
    assert_eq!(refused["code"], "committee_decision_missing");

    // A malformed record is refused and records nothing.
    let absent_voter = json!({
        "present": ["A", "B", "C", "D"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "yes" }, { "member": "D", "vote": "yes" },
            { "member": "E", "vote": "yes" }
        ]
    });
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/committee"),
        &p.director.1,
        Some(&absent_voter),
        422,
    )
    .await;
    assert_eq!(refused["code"], "invalid_decision");

    // Three yes votes out of five present: recorded, but not enough to approve.
    let three = json!({
        "present": ["A", "B", "C", "D", "E"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "yes" }, { "member": "D", "vote": "no" },
            { "member": "E", "vote": "abstain" }
        ],
        "reason": "Meeting of 2026-02-20"
    });
    let json = expect(
        &app,
        "POST",
        &format!("{base}/committee"),
        &p.director.1,
        Some(&three),
        200,
    )
    .await;
    assert_eq!(json["committee"]["approved"], false);
    assert_eq!(json["committee"]["affirmative"], 3);
    let refused = expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        409,
    )
    .await;
    assert_eq!(refused["code"], "committee_not_approved");
    assert!(refused["message"].as_str().unwrap().contains("3 yes"));
    assert_eq!(status_of(&app, &id, &p.director.1).await, "in_review");

    // A split without quorum: the director's tie-break vote makes the fourth.
    let split = json!({
        "present": ["A", "B", "C"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "no" }
        ],
        "director": "yes"
    });
    let json = expect(
        &app,
        "POST",
        &format!("{base}/committee"),
        &p.director.1,
        Some(&split),
        200,
    )
    .await;
    assert_eq!(
        json["committee"]["approved"], false,
        "3 affirmative is still too few"
    );

    let four = json!({
        "present": ["A", "B", "C", "D", "E", "F"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "yes" }, { "member": "D", "vote": "yes" },
            { "member": "E", "vote": "no" }, { "member": "F", "vote": "no" }
        ],
        "reason": "Meeting of 2026-03-05"
    });
    let json = expect(
        &app,
        "POST",
        &format!("{base}/committee"),
        &p.director.1,
        Some(&four),
        200,
    )
    .await;
    assert_eq!(json["committee"]["approved"], true);
    // Still not by the wrong role or the requesting organization's director.
    expect(&app, "POST", &format!("{base}/approve"), &p.it.1, None, 403).await;
    expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director_of_university.1,
        None,
        403,
    )
    .await;
    let json = expect(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        200,
    )
    .await;
    assert_eq!(json["status"], "approved");

    let dua = dua_body("DUA-2026-0002", &[&p.requester.0], &p.colleague.0);
    let json = expect(
        &app,
        "POST",
        &format!("{base}/dua"),
        &p.privacy.1,
        Some(&dua),
        200,
    )
    .await;
    assert_eq!(json["status"], "dua_executed");
    assert_eq!(json["level"], "III");
    assert_eq!(json["dua"]["networks"], json!(["192.0.2.0/24"]));

    // A second release cannot reuse the DUA number.
    let other = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_three_request()),
        201,
    )
    .await;
    let other_id = other["id"].as_str().unwrap();
    let other_base = format!("/api/v1/releases/{other_id}");
    expect(
        &app,
        "POST",
        &format!("{other_base}/submit"),
        &p.requester.1,
        None,
        200,
    )
    .await;
    expect(
        &app,
        "POST",
        &format!("{other_base}/review"),
        &p.director.1,
        None,
        200,
    )
    .await;
    expect(
        &app,
        "POST",
        &format!("{other_base}/committee"),
        &p.director.1,
        Some(&four),
        200,
    )
    .await;
    expect(
        &app,
        "POST",
        &format!("{other_base}/approve"),
        &p.director.1,
        None,
        200,
    )
    .await;
    let refused = expect(
        &app,
        "POST",
        &format!("{other_base}/dua"),
        &p.director.1,
        Some(&dua),
        409,
    )
    .await;
    assert_eq!(refused["code"], "dua_number_taken");
}

async fn bad_requests_are_refused_at_submission(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let before = app
        .state
        .releases
        .list(steward::release::Caller::System, &Default::default())
        .await
        .unwrap()
        .len();

    let mut unknown = level_one_request();
    unknown["elements"][0]["element"] = json!("med_elig.favourite_colour");
    let refused = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&unknown),
        422,
    )
    .await;
    assert_eq!(refused["code"], "invalid_request");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("`med_elig.favourite_colour` is not in the element catalog"));

    let mut above = level_one_request();
    above["elements"][0] = json!({ "element": "med_elig.member_zip", "reason": "ZIP analysis" });
    let refused = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&above),
        422,
    )
    .await;
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("needs Level II but the request is for Level I"));

    let mut no_reason = level_three_request();
    no_reason["elements"][1] = json!({ "element": "med_elig.member_zip" });
    let refused = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&no_reason),
        422,
    )
    .await;
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("needs a reason"));

    // Only recipients file requests; malformed bodies name the problem.
    expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.director.1,
        Some(&level_one_request()),
        403,
    )
    .await;
    let mut bad_id = level_one_request();
    bad_id["elements"][0]["element"] = json!("Not An Id");
    let refused = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&bad_id),
        400,
    )
    .await;
    assert!(refused["message"].as_str().unwrap().contains("Not An Id"));

    let after = app
        .state
        .releases
        .list(steward::release::Caller::System, &Default::default())
        .await
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing was filed");
}

async fn recipients_see_only_their_releases(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0003").await;
    let draft = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_three_request()),
        201,
    )
    .await;
    let draft_id = draft["id"].as_str().unwrap();

    // The requester sees both; a colleague sees the organization's request but not the
    // release whose DUA does not name them; the outsider sees neither.
    let (_, list) = call(&app, "GET", "/api/v1/releases", &p.requester.1, None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, list) = call(&app, "GET", "/api/v1/releases", &p.colleague.1, None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [draft_id]);
    expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}"),
        &p.colleague.1,
        None,
        403,
    )
    .await;
    let (_, list) = call(&app, "GET", "/api/v1/releases", &p.outsider.1, None).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}"),
        &p.outsider.1,
        None,
        403,
    )
    .await;
    expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}/letter"),
        &p.outsider.1,
        None,
        403,
    )
    .await;
    expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{draft_id}"),
        &p.outsider.1,
        None,
        403,
    )
    .await;

    // Filters: state, level, organization.
    let (_, list) = call(
        &app,
        "GET",
        "/api/v1/releases?state=dua_executed",
        &p.privacy.1,
        None,
    )
    .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, list) = call(&app, "GET", "/api/v1/releases?level=III", &p.it.1, None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [draft_id]);
    let (_, list) = call(&app, "GET", "/api/v1/requests", &p.director.1, None).await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [draft_id], "requests are the undecided releases");
    let org = list[0]["organization_id"].as_str().unwrap().to_owned();
    let (_, list) = call(
        &app,
        "GET",
        &format!("/api/v1/releases?organization={org}"),
        &p.director.1,
        None,
    )
    .await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let refused = expect(
        &app,
        "GET",
        "/api/v1/releases?state=shipped",
        &p.director.1,
        None,
        400,
    )
    .await;
    assert!(refused["message"].as_str().unwrap().contains("shipped"));
    expect(
        &app,
        "GET",
        "/api/v1/releases?colour=red",
        &p.director.1,
        None,
        400,
    )
    .await;
}

async fn dua_amendment_is_a_new_version(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0004").await;
    let base = format!("/api/v1/releases/{id}");
    // The outsider cannot be added; the amendment changes nothing then.
    let refused = expect(
        &app,
        "PUT",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&json!({ "add_users": [p.outsider.0.id.to_string()] })),
        422,
    )
    .await;
    assert_eq!(refused["code"], "dua_user_of_other_organization");
    let json = expect(
        &app,
        "PUT",
        &format!("{base}/dua"),
        &p.privacy.1,
        Some(&json!({
            "add_users": [p.colleague.0.id.to_string()],
            "expiry": "2027-06-30",
            "reason": "Amendment 1: extension and a second analyst"
        })),
        200,
    )
    .await;
    assert_eq!(json["dua"]["version"], 2);
    assert_eq!(json["dua"]["expiry"], "2027-06-30");
    assert_eq!(json["dua"]["authorized_users"].as_array().unwrap().len(), 2);
    // An amendment that changes nothing is refused.
    let refused = expect(
        &app,
        "PUT",
        &format!("{base}/dua"),
        &p.privacy.1,
        Some(&json!({ "expiry": "2027-06-30" })),
        422,
    )
    .await;
    assert!(refused["message"].as_str().unwrap().contains("expiry"));
    // The colleague now reads it through the DUA; the access log has the amendment.
    expect(&app, "GET", &base, &p.colleague.1, None, 200).await;
    let events = release_events(&app).await;
    assert!(events.iter().any(|e| e.action == "dua_amended"));
}
