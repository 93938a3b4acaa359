//! The published API: an OpenAPI 3.1 document of every route in [`ROUTES`], built with
//! `utoipa`'s builders and served at `GET /api/v1/openapi.json`. Each route's summary, the
//! roles that may perform it and its body are in [`OPERATIONS`]; a test fails when a route has
//! no entry there, so no route goes undocumented. A JSON body's schema is derived from the very
//! type its handler parses it into (`utoipa::ToSchema`), so the document cannot drift from what
//! the server accepts.

use axum::Json;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder,
    PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};
use utoipa::ToSchema;

use super::admin::{NewOrgBody, NewUserBody, RolesBody};
use super::auth::{LoginBody, RefreshBody};
use super::downloads::{LinkBody, RevocationBody};
use super::me::{NewKeyBody, NewTokenBody, PasswordBody};
use super::releases::{AmendBody, CommitteeBody, DuaBody, NarrowBody, ReasonBody, RequestBody};
use super::{Access, ROUTES};
use crate::destruction::{Attestation, DemandRequest};

/// Named schemas, as `components.schemas` holds them.
type Schemas = Vec<(String, RefOr<Schema>)>;

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// JSON: adds the schema of the type the handler parses (and the schemas it refers to)
    /// to the components, and returns a reference to it.
    Json(fn(&mut Schemas) -> RefOr<Schema>),
    /// JSON the server also takes empty (every field then has its default).
    OptionalJson(fn(&mut Schemas) -> RefOr<Schema>),
    /// Another content type, described in words.
    Csv(&'static str),
}

/// [`Body::Json`] of `T`.
fn json<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    T::schemas(schemas);
    schemas.push((T::name().into_owned(), T::schema()));
    Ref::from_schema_name(T::name()).into()
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// HTTP method.
    pub method: &'static str,
    /// Path template, as in [`ROUTES`].
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may perform it (the authorization decision's grants, in words).
    pub who: &'static str,
    /// The body it takes; `None`: no body.
    pub body: Option<Body>,
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    who: &'static str,
    body: Option<Body>,
) -> Operation {
    Operation {
        method,
        path,
        summary,
        who,
        body,
    }
}

const ANYONE: &str = "anyone signed in";
const OWNER: &str = "the signed-in user, for their own account";
const ADMIN: &str = "administrator";
const RECIPIENT: &str = "recipient of the requesting organization";
const PRIVACY: &str = "privacy officer";
const DIRECTOR: &str = "executive director of another organization than the requester's";
const IT: &str = "IT staff";

/// Every route's documentation.
pub const OPERATIONS: &[Operation] = &[
    op("POST", "/api/v1/auth/login", "Sign in with password and TOTP code (or a recovery code); returns the session's tokens", "anyone", Some(Body::Json(json::<LoginBody>))),
    op("POST", "/api/v1/auth/refresh", "Exchange a refresh token for new tokens (single use)", "anyone holding a refresh token", Some(Body::OptionalJson(json::<RefreshBody>))),
    op("POST", "/api/v1/auth/logout", "End the current session", OWNER, None),
    op("GET", "/api/v1/me", "The signed-in user", OWNER, None),
    op("PUT", "/api/v1/me/password", "Change one's password (ends every other session and token)", OWNER, Some(Body::Json(json::<PasswordBody>))),
    op("GET", "/api/v1/me/keys", "One's registered recipient keys", OWNER, None),
    op("POST", "/api/v1/me/keys", "Register an age or ssh-ed25519 public key extracts are encrypted to", OWNER, Some(Body::Json(json::<NewKeyBody>))),
    op("DELETE", "/api/v1/me/keys/{id}", "Remove one of one's keys", OWNER, None),
    op("GET", "/api/v1/me/tokens", "One's API tokens", OWNER, None),
    op("POST", "/api/v1/me/tokens", "Create an API token (shown once), optionally limited to some of one's roles", OWNER, Some(Body::Json(json::<NewTokenBody>))),
    op("DELETE", "/api/v1/me/tokens/{id}", "Revoke one of one's API tokens", OWNER, None),
    op("GET", "/api/v1/admin/orgs", "Organizations", ADMIN, None),
    op("POST", "/api/v1/admin/orgs", "Create an organization", ADMIN, Some(Body::Json(json::<NewOrgBody>))),
    op("GET", "/api/v1/admin/users", "Users", ADMIN, None),
    op("POST", "/api/v1/admin/users", "Create a user: a one-time password, a TOTP secret and recovery codes", ADMIN, Some(Body::Json(json::<NewUserBody>))),
    op("POST", "/api/v1/admin/users/{id}/disable", "Disable a user (ends their sessions and tokens)", ADMIN, None),
    op("PUT", "/api/v1/admin/users/{id}/roles", "Set a user's roles", ADMIN, Some(Body::Json(json::<RolesBody>))),
    op("POST", "/api/v1/admin/users/{id}/unlock", "Lift a user's lockout", ADMIN, None),
    op("GET", "/api/v1/admin/users/{id}/tokens", "A user's API tokens", ADMIN, None),
    op("DELETE", "/api/v1/admin/tokens/{id}", "Revoke any API token", ADMIN, None),
    op("POST", "/api/v1/requests", "File a data request (row-level elements, or an aggregate table), checked against the catalog", RECIPIENT, Some(Body::Json(json::<RequestBody>))),
    op("GET", "/api/v1/requests", "Requests the caller may see", ANYONE, None),
    op("GET", "/api/v1/releases", "Releases the caller may see", ANYONE, None),
    op("GET", "/api/v1/releases/{id}", "One release: request, approved elements, committee, DUA, allowed transitions", ANYONE, None),
    op("GET", "/api/v1/releases/{id}/history", "A release's transitions with their reasons", ANYONE, None),
    op("POST", "/api/v1/releases/{id}/submit", "Submit a draft request", RECIPIENT, Some(Body::OptionalJson(json::<ReasonBody>))),
    op("POST", "/api/v1/releases/{id}/review", "Start the privacy review", PRIVACY, Some(Body::OptionalJson(json::<ReasonBody>))),
    op("POST", "/api/v1/releases/{id}/approve", "Approve (Level III needs the subcommittee's decision first)", DIRECTOR, Some(Body::OptionalJson(json::<ReasonBody>))),
    op("POST", "/api/v1/releases/{id}/deny", "Deny a request", "privacy officer or executive director", Some(Body::OptionalJson(json::<ReasonBody>))),
    op("POST", "/api/v1/releases/{id}/withdraw", "Withdraw one's request", RECIPIENT, Some(Body::OptionalJson(json::<ReasonBody>))),
    op("POST", "/api/v1/releases/{id}/revoke", "Revoke a release", "executive director", Some(Body::OptionalJson(json::<ReasonBody>))),
    op("POST", "/api/v1/releases/{id}/destruction", "Demand destruction of a release's data", "executive director", Some(Body::Json(json::<DemandRequest>))),
    op("GET", "/api/v1/releases/{id}/destruction", "The destruction demand and its progress", "executive director, privacy officer, the release's organization", None),
    op("GET", "/api/v1/releases/{id}/destruction/certificate", "The signed destruction certificate (JSON)", "executive director, privacy officer, the release's organization", None),
    op("GET", "/api/v1/releases/{id}/destruction/certificate.pdf", "The destruction certificate as PDF", "executive director, privacy officer, the release's organization", None),
    op("POST", "/api/v1/releases/{id}/destruction/attestation", "Attest the recipients' destruction of their copies", "the DUA's responsible person", Some(Body::Json(json::<Attestation>))),
    op("POST", "/api/v1/releases/{id}/publication-reviews", "Check a table before publication (CSV body: dimensions, count, percent?)", "a recipient the DUA names", Some(Body::Csv("a table: one column per dimension, then `count`, optionally `percent`"))),
    op("GET", "/api/v1/publication-reviews", "Every publication review", PRIVACY, None),
    op("PUT", "/api/v1/releases/{id}/elements", "Narrow the approved elements (never widen)", "privacy officer or executive director", Some(Body::Json(json::<NarrowBody>))),
    op("POST", "/api/v1/releases/{id}/committee", "Record the Level III subcommittee's decision (4 affirmative votes)", "executive director", Some(Body::Json(json::<CommitteeBody>))),
    op("POST", "/api/v1/releases/{id}/dua", "Record the executed DUA; issues the signed approval letter", DIRECTOR, Some(Body::Json(json::<DuaBody>))),
    op("PUT", "/api/v1/releases/{id}/dua", "Amend the DUA (a new version and letter)", DIRECTOR, Some(Body::Json(json::<AmendBody>))),
    op("GET", "/api/v1/releases/{id}/letter", "The signed approval letter (PDF)", ANYONE, None),
    op("GET", "/api/v1/releases/{id}/letter/signature", "The approval letter's Ed25519 signature (hex)", ANYONE, None),
    op("GET", "/api/v1/server/signing-key", "The server's Ed25519 public key", ANYONE, None),
    op("GET", "/api/v1/catalog", "Datasets and their elements: level, class, supplemental flag, transforms, Level I groupings", ANYONE, None),
    op("POST", "/api/v1/releases/{id}/extract", "Start the extract job of a release under an executed DUA", IT, None),
    op("GET", "/api/v1/jobs", "Jobs with state and progress", "IT staff, privacy officer, administrator", None),
    op("GET", "/api/v1/jobs/{id}", "One job with its log", "IT staff, privacy officer, administrator", None),
    op("POST", "/api/v1/jobs/{id}/cancel", "Cancel a queued or running job", IT, None),
    op("POST", "/api/v1/jobs/{id}/retry", "Retry a failed job", IT, None),
    op("GET", "/api/v1/access-log", "Access-log records, filtered", PRIVACY, None),
    op("GET", "/api/v1/access-log/{seq}/proof", "A record's inclusion proof against a checkpoint", PRIVACY, None),
    op("GET", "/api/v1/access-log/checkpoint", "The access log's latest signed checkpoint", ANYONE, None),
    op("GET", "/api/v1/access-log/consistency", "A consistency proof between two checkpoints", ANYONE, None),
    op("GET", "/api/v1/access-log/reports/{name}", "A DUA report (downloads by release, overdue destructions, ...)", PRIVACY, None),
    op("GET", "/api/v1/me/access-log", "One's own access-log records (receipts)", OWNER, None),
    op("GET", "/api/v1/releases/{id}/files", "A release's files with sizes, checksums and downloads left", "a recipient the DUA names; IT staff", None),
    op("POST", "/api/v1/files/{id}/links", "A short-lived download link (EdDSA JWT) for one file", "a recipient the DUA names", Some(Body::OptionalJson(json::<LinkBody>))),
    op("GET", "/dl/{token}", "Download a file (ciphertext) by its link, with ranges", "the user the link was issued to, signed in", None),
    op("POST", "/api/v1/revocations", "Stop access: a user, an organization, a release or a file", "executive director", Some(Body::Json(json::<RevocationBody>))),
    op("GET", "/api/v1/revocations", "Revocations", "executive director, privacy officer", None),
    op("POST", "/api/v1/revocations/{id}/lift", "Lift a revocation", "executive director", None),
    op("GET", "/api/v1/openapi.json", "This document", "anyone", None),
];

/// The documentation of `method path`, if any.
pub fn operation(method: &str, path: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|o| o.method == method && o.path == path)
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Get,
    }
}

/// The document: every route of [`ROUTES`] that [`OPERATIONS`] documents.
pub fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut schemas = Schemas::new();
    for route in ROUTES {
        let Some(doc) = operation(route.method, route.path) else {
            continue;
        };
        let tag = route
            .path
            .trim_start_matches("/api/v1/")
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let id: String = format!("{} {}", route.method, route.path)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut operation = OperationBuilder::new()
            .tag(tag)
            .summary(Some(doc.summary))
            .description(Some(format!("Who: {}.", doc.who)))
            .operation_id(Some(id))
            .response(
                "200",
                ResponseBuilder::new().description("Success (201 when something is created)"),
            )
            .response(
                "400",
                ResponseBuilder::new().description("Malformed request: `{code, message}`"),
            )
            .response(
                "403",
                ResponseBuilder::new()
                    .description("Forbidden: the message names the role or DUA condition needed"),
            )
            .response("404", ResponseBuilder::new().description("Not found"))
            .response(
                "409",
                ResponseBuilder::new()
                    .description("Wrong state: names the current and allowed states"),
            )
            .response(
                "422",
                ResponseBuilder::new().description("Refused by policy: names the offending item"),
            );
        if route.access == Access::Authenticated {
            operation = operation
                .response(
                    "401",
                    ResponseBuilder::new().description("Not signed in or the token is invalid"),
                )
                .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        for name in route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        if let Some(body) = doc.body {
            let (content_type, description, schema, required) = match body {
                Body::Json(schema) => ("application/json", None, schema(&mut schemas), true),
                Body::OptionalJson(schema) => (
                    "application/json",
                    Some("May be empty"),
                    schema(&mut schemas),
                    false,
                ),
                Body::Csv(description) => (
                    "text/csv",
                    Some(description),
                    ObjectBuilder::new().schema_type(Type::String).into(),
                    true,
                ),
            };
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if required {
                        Required::True
                    } else {
                        Required::False
                    }))
                    .description(description)
                    .content(
                        content_type,
                        ContentBuilder::new().schema(Some(schema)).build(),
                    )
                    .build(),
            ));
        }
        paths = paths.path(
            route.path,
            PathItem::new(http_method(route.method), operation.build()),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Steward")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Delivery of health-data extracts under Data Use Agreements. Every decision \
                     is the server's one authorization decision over the resource's facts; \
                     errors are `{code, message}`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(
            ComponentsBuilder::new()
                .schemas_from_iter(schemas)
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
                )
                .build(),
        ))
        .build()
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn show() -> Json<OpenApi> {
    Json(document())
}
