//! The authorization matrix: every API route x every role x unauthenticated, with the expected
//! decision written down. A route missing from this table (or listed here but not served)
//! fails the test.

use std::collections::BTreeSet;

use steward::domain::role::Role;
use steward::http::api::{Access, ROUTES};

use crate::helpers::{spawn_app, Db, Session};
use crate::on_both_databases;

on_both_databases!(every_route_every_role);

/// The download route: its token is the credential checked first, so a caller with anything
/// but a link gets 401 whatever their roles.
const LINK_ROUTE: &str = "/dl/{token}";

/// Allowed (`A`) or denied (`D`) for recipient, it_staff, executive_director, privacy_officer,
/// admin, in that order.
const A: bool = true;
const D: bool = false;

/// (method, path, [recipient, it_staff, executive_director, privacy_officer, admin]).
/// Logout comes last: it ends the session the other rows use.
const MATRIX: &[(&str, &str, [bool; 5])] = &[
    ("POST", "/api/v1/auth/login", [A, A, A, A, A]),
    ("POST", "/api/v1/auth/refresh", [A, A, A, A, A]),
    ("GET", "/api/v1/me", [A, A, A, A, A]),
    ("PUT", "/api/v1/me/password", [A, A, A, A, A]),
    ("GET", "/api/v1/me/keys", [A, D, D, D, D]),
    ("POST", "/api/v1/me/keys", [A, D, D, D, D]),
    ("DELETE", "/api/v1/me/keys/{id}", [A, D, D, D, D]),
    ("GET", "/api/v1/me/tokens", [A, A, A, A, A]),
    ("POST", "/api/v1/me/tokens", [A, A, A, A, A]),
    ("DELETE", "/api/v1/me/tokens/{id}", [A, A, A, A, A]),
    ("GET", "/api/v1/admin/orgs", [D, D, D, D, A]),
    ("POST", "/api/v1/admin/orgs", [D, D, D, D, A]),
    ("GET", "/api/v1/admin/users", [D, D, D, D, A]),
    ("POST", "/api/v1/admin/users", [D, D, D, D, A]),
    ("POST", "/api/v1/admin/users/{id}/disable", [D, D, D, D, A]),
    ("PUT", "/api/v1/admin/users/{id}/roles", [D, D, D, D, A]),
    ("POST", "/api/v1/admin/users/{id}/unlock", [D, D, D, D, A]),
    ("GET", "/api/v1/admin/users/{id}/tokens", [D, D, D, D, A]),
    ("DELETE", "/api/v1/admin/tokens/{id}", [D, D, D, D, A]),
    // Release routes, with an id that matches no release: readers with scope "any" get 404,
    // a recipient (whose grants reach only their organization's or DUA's releases) gets 403,
    // so "absent" and "not yours" cannot be told apart.
    ("POST", "/api/v1/requests", [A, D, D, D, D]),
    ("GET", "/api/v1/requests", [A, A, A, A, D]),
    ("GET", "/api/v1/releases", [A, A, A, A, D]),
    ("GET", "/api/v1/releases/{id}", [D, A, A, A, D]),
    ("GET", "/api/v1/releases/{id}/history", [D, A, A, A, D]),
    ("POST", "/api/v1/releases/{id}/submit", [D, D, D, D, D]),
    ("POST", "/api/v1/releases/{id}/review", [D, D, A, A, D]),
    ("POST", "/api/v1/releases/{id}/approve", [D, D, A, D, D]),
    ("POST", "/api/v1/releases/{id}/deny", [D, D, A, D, D]),
    ("POST", "/api/v1/releases/{id}/withdraw", [D, D, D, D, D]),
    ("POST", "/api/v1/releases/{id}/revoke", [D, D, A, D, D]),
    // Destruction: the director demands; the director and the privacy officer follow it
    // (recipients, for their own organization's releases); only the DUA's responsible person
    // attests, so nobody may for an unknown release.
    ("POST", "/api/v1/releases/{id}/destruction", [D, D, A, D, D]),
    ("GET", "/api/v1/releases/{id}/destruction", [D, D, A, A, D]),
    (
        "GET",
        "/api/v1/releases/{id}/destruction/certificate",
        [D, D, A, A, D],
    ),
    (
        "GET",
        "/api/v1/releases/{id}/destruction/certificate.pdf",
        [D, D, A, A, D],
    ),
    (
        "POST",
        "/api/v1/releases/{id}/destruction/attestation",
        [D, D, D, D, D],
    ),
    // Publication review: recipients named by the DUA submit; the privacy officer reads all.
    (
        "POST",
        "/api/v1/releases/{id}/publication-reviews",
        [D, D, D, D, D],
    ),
    ("GET", "/api/v1/publication-reviews", [D, D, D, A, D]),
    ("PUT", "/api/v1/releases/{id}/elements", [D, D, A, A, D]),
    ("POST", "/api/v1/releases/{id}/committee", [D, D, A, D, D]),
    ("POST", "/api/v1/releases/{id}/dua", [D, D, A, A, D]),
    ("PUT", "/api/v1/releases/{id}/dua", [D, D, A, A, D]),
    ("GET", "/api/v1/releases/{id}/letter", [D, A, A, A, D]),
    (
        "GET",
        "/api/v1/releases/{id}/letter/signature",
        [D, A, A, A, D],
    ),
    ("GET", "/api/v1/server/signing-key", [A, A, A, A, A]),
    ("GET", "/api/v1/catalog", [A, A, A, A, A]),
    ("GET", "/api/v1/openapi.json", [A, A, A, A, A]),
    // Extract jobs: IT staff run them; the privacy officer and administrators watch them;
    // recipients never see them. Unknown ids answer 404 to those allowed.
    ("POST", "/api/v1/releases/{id}/extract", [D, A, D, D, D]),
    ("GET", "/api/v1/jobs", [D, A, D, A, A]),
    ("GET", "/api/v1/jobs/{id}", [D, A, D, A, A]),
    ("POST", "/api/v1/jobs/{id}/cancel", [D, A, D, D, D]),
    ("POST", "/api/v1/jobs/{id}/retry", [D, A, D, D, D]),
    // The access log: the privacy officer reviews it; everyone reads the log's checkpoint and
    // their own events; a receipt of a position that is nobody's is the privacy officer's.
    ("GET", "/api/v1/access-log", [D, D, D, A, D]),
    ("GET", "/api/v1/access-log/{seq}/proof", [D, D, D, A, D]),
    ("GET", "/api/v1/access-log/checkpoint", [A, A, A, A, A]),
    ("GET", "/api/v1/access-log/consistency", [A, A, A, A, A]),
    ("GET", "/api/v1/access-log/reports/{name}", [D, D, D, A, D]),
    ("GET", "/api/v1/me/access-log", [A, A, A, A, A]),
    // Files of a release that matches no id: like the release itself.
    ("GET", "/api/v1/releases/{id}/files", [D, A, A, A, D]),
    // A link for a file that matches no id: decided against facts that match nobody.
    ("POST", "/api/v1/files/{id}/links", [D, D, D, D, D]),
    // Not a link: 401 for everyone, signed in or not (see `LINK_ROUTE`).
    ("GET", "/dl/{token}", [A, A, A, A, A]),
    ("POST", "/api/v1/revocations", [D, D, A, D, D]),
    ("GET", "/api/v1/revocations", [D, D, A, A, D]),
    ("POST", "/api/v1/revocations/{id}/lift", [D, D, A, D, D]),
    ("POST", "/api/v1/auth/logout", [A, A, A, A, A]),
];

#[test]
fn matrix_lists_exactly_the_served_routes() {
    let served: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    let table: BTreeSet<(&str, &str)> = MATRIX.iter().map(|(m, p, _)| (*m, *p)).collect();
    let missing: Vec<_> = served.difference(&table).collect();
    let extra: Vec<_> = table.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the authorization matrix: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "matrix rows for routes that are not served: {extra:?}"
    );
    assert_eq!(table.len(), MATRIX.len(), "a route is listed twice");
}

async fn every_route_every_role(db: Db) {
    matrix_lists_exactly_the_served_routes();
    let app = spawn_app(db).await;
    let mut sessions: Vec<(Role, Session)> = Vec::new();
    for role in Role::ALL {
        // Staff work at the agency; recipients at another organization.
        let org = if role.is_staff() { "Agency" } else { "Org A" };
        let user = app
            .create_user(&format!("u_{}", role.as_str()), org, &[role])
            .await;
        sessions.push((role, app.login(&user).await));
    }
    // A target user for the admin routes' `{id}`, and any id for tokens and keys.
    let target = app.create_user("target", "Org B", &[Role::Recipient]).await;
    let any_id = uuid::Uuid::new_v4().to_string();
    for (method, template, expected) in MATRIX {
        let access = ROUTES
            .iter()
            .find(|r| r.method == *method && r.path == *template)
            .expect("checked above")
            .access;
        let path = if template.contains("/users/{id}") {
            template.replace("{id}", &target.id.to_string())
        } else {
            template
                .replace("{id}", &any_id)
                .replace("{seq}", "999999")
                .replace("{name}", "refusals")
                .replace("{token}", "not-a-link")
        };
        let body = (*method != "GET" && *method != "DELETE").then(|| serde_json::json!({}));
        // Unauthenticated.
        let status = app
            .call(method, &path, None, body.as_ref())
            .await
            .status()
            .as_u16();
        match access {
            Access::Authenticated => {
                assert_eq!(status, 401, "{method} {template} without credentials")
            }
            Access::Public => assert!(
                status != 401 && status != 403,
                "{method} {template} is public but answered {status}"
            ),
        }
        if *template == LINK_ROUTE {
            for (role, session) in &sessions {
                let response = app
                    .call(method, &path, Some(&session.access_token), None)
                    .await;
                assert_eq!(response.status(), 401, "{template} as {role}");
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["code"], "invalid_link");
            }
            continue;
        }
        for (i, (role, session)) in sessions.iter().enumerate() {
            let body = if *template == "/api/v1/auth/refresh" {
                // The refresh route takes its credential in the body.
                Some(serde_json::json!({ "refresh_token": "not-a-token" }))
            } else {
                body.clone()
            };
            let response = app
                .call(method, &path, Some(&session.access_token), body.as_ref())
                .await;
            let status = response.status().as_u16();
            let allowed = expected[i];
            if allowed {
                assert!(
                    status != 403 && (status != 401 || access == Access::Public),
                    "{method} {template} as {role} should be allowed, got {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{method} {template} as {role} should be denied"
                );
                let body: serde_json::Value = response.json().await.unwrap();
                assert_eq!(body["code"], "forbidden");
            }
        }
    }
    // Every denial above is in the access log with its route and reason.
    let denials = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|r| r.action == "authorization" && r.outcome == "denied")
        .count();
    let expected_denials: usize = MATRIX
        .iter()
        .map(|(_, _, row)| row.iter().filter(|allowed| !**allowed).count())
        .sum();
    assert_eq!(denials, expected_denials);
}

on_both_databases!(the_matrix_holds_for_token_subsets_outside_staff_and_own_roles);

/// The same routes for three more callers, each expected from the matrix above:
/// - an API token limited to `executive_director`, of a user who also holds `it_staff`: the
///   director's column, except approval (separation of duties looks at every role held) and
///   making tokens (a token cannot make tokens);
/// - an executive director of another organization than the agency: no role in force, so every
///   authenticated route is denied;
/// - an administrator changing their own roles: denied, though they may change others'.
async fn the_matrix_holds_for_token_subsets_outside_staff_and_own_roles(db: Db) {
    let app = spawn_app(db).await;
    let both = app
        .create_user("dual", "Agency", &[Role::ItStaff, Role::ExecutiveDirector])
        .await;
    let session = app.login(&both).await;
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&session.access_token),
            &serde_json::json!({ "name": "director only", "expires_in_days": 1, "roles": ["executive_director"] }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let token: serde_json::Value = response.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let outside = app
        .create_user("outside_director", "University", &[Role::ExecutiveDirector])
        .await;
    let outside = app.login(&outside).await;
    let target = app.create_user("target", "Org B", &[Role::Recipient]).await;
    let any_id = uuid::Uuid::new_v4().to_string();
    let director = 2; // the executive director's column
    for (method, template, expected) in MATRIX {
        if *template == "/api/v1/auth/logout" {
            continue; // it would end the sessions the other rows use
        }
        let access = ROUTES
            .iter()
            .find(|r| r.method == *method && r.path == *template)
            .expect("served")
            .access;
        let path = if template.contains("/users/{id}") {
            template.replace("{id}", &target.id.to_string())
        } else {
            template
                .replace("{id}", &any_id)
                .replace("{seq}", "999999")
                .replace("{name}", "refusals")
                .replace("{token}", "not-a-link")
        };
        let body = if *template == "/api/v1/auth/refresh" {
            Some(serde_json::json!({ "refresh_token": "not-a-token" }))
        } else {
            (*method != "GET" && *method != "DELETE").then(|| serde_json::json!({}))
        };
        if *template == LINK_ROUTE {
            for credential in [token.as_str(), outside.access_token.as_str()] {
                let status = app
                    .call(method, &path, Some(credential), None)
                    .await
                    .status();
                assert_eq!(status, 401, "{template}");
            }
            continue;
        }
        let token_allowed = expected[director]
            && *template != "/api/v1/releases/{id}/approve"
            && !(*method == "POST" && *template == "/api/v1/me/tokens");
        let outside_allowed = access == Access::Public;
        for (caller, credential, allowed) in [
            ("token subset", token.as_str(), token_allowed),
            (
                "outside director",
                outside.access_token.as_str(),
                outside_allowed,
            ),
        ] {
            let status = app
                .call(method, &path, Some(credential), body.as_ref())
                .await
                .status()
                .as_u16();
            if allowed {
                assert!(
                    status != 403 && (status != 401 || access == Access::Public),
                    "{method} {template} as {caller} should be allowed, got {status}"
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{method} {template} as {caller} should be denied"
                );
            }
        }
    }
    let admin = app
        .create_user("self_admin", "Agency", &[Role::Admin])
        .await;
    let admin_session = app.login(&admin).await;
    let roles = serde_json::json!({ "roles": ["admin", "executive_director"] });
    for (user, expected) in [(admin.id, 403), (target.id, 200)] {
        let status = app
            .call(
                "PUT",
                &format!("/api/v1/admin/users/{user}/roles"),
                Some(&admin_session.access_token),
                Some(&roles),
            )
            .await
            .status()
            .as_u16();
        assert_eq!(status, expected, "roles of {user}");
    }
}
