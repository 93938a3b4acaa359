//! The approval letter: issued at DUA execution, opens as a PDF that states the DUA number, and
//! its signature verifies with the server's public key from the API.

use serde_json::json;
use steward::crypto::signing::verify_hex;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;
use crate::release_support::{executed_level_one, expect, people};

on_both_databases!(letter_is_a_signed_pdf_naming_the_dua);

async fn letter_is_a_signed_pdf_naming_the_dua(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0042").await;
    let path = format!("/api/v1/releases/{id}/letter");

    let response = app
        .call("GET", &path, Some(&p.requester.1.access_token), None)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/pdf"
    );
    let pdf = response.bytes().await.unwrap().to_vec();
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");

    let signature = expect(
        &app,
        "GET",
        &format!("{path}/signature"),
        &p.requester.1,
        None,
        200,
    )
    .await;
    let key = expect(
        &app,
        "GET",
        "/api/v1/server/signing-key",
        &p.requester.1,
        None,
        200,
    )
    .await;
    let public = key["public_key"].as_str().unwrap();
    assert_eq!(key["algorithm"], "ed25519");
    assert_eq!(signature["public_key"], public);
    let sig = signature["signature"].as_str().unwrap();
    verify_hex(public, &pdf, sig).expect("the letter's signature verifies");
    let mut tampered = pdf.clone();
    let last = tampered.len() - 10;
    tampered[last] ^= 1;
    assert!(
        verify_hex(public, &tampered, sig).is_err(),
        "a changed byte fails"
    );
    // The key is the one the server keeps in data_dir/keys/signing.key.
    assert_eq!(public, app.state.signer.public_hex());

    if let Some(text) = steward::pdf::tests_support::pdftotext(&pdf) {
        assert!(text.contains("DUA-2026-0042"), "{text}");
        assert!(text.contains("Level I"), "{text}");
    }

    // An amendment issues a new letter for the new term, signed again.
    let base = format!("/api/v1/releases/{id}");
    expect(
        &app,
        "PUT",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&json!({ "expiry": "2027-03-31" })),
        200,
    )
    .await;
    let signature = expect(
        &app,
        "GET",
        &format!("{path}/signature"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(signature["dua_version"], 2);
    let pdf2 = app
        .call("GET", &path, Some(&p.it.1.access_token), None)
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_ne!(pdf, pdf2);
    verify_hex(public, &pdf2, signature["signature"].as_str().unwrap()).expect("verifies");

    // No letter before the DUA is executed.
    let draft = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&crate::release_support::level_one_request()),
        201,
    )
    .await;
    let draft_id = draft["id"].as_str().unwrap();
    expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{draft_id}/letter"),
        &p.director.1,
        None,
        404,
    )
    .await;
}
