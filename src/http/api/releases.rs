//! `/api/v1/requests`, `/api/v1/releases/...` and `/api/v1/server/signing-key`: data requests,
//! the release lifecycle, the subcommittee decision, the DUA and the signed approval letter.
//!
//! Each handler authorizes first (for a release: against its facts, or against facts that
//! match nobody when the id is unknown, so "absent" and "not yours" look the same), then parses
//! the body, then calls `release::ReleaseService`.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use time::Date;
use uuid::Uuid;

use super::{parse_json, rfc3339, Authed};
use crate::audit::Reason;
use crate::auth::{Action, Resource};
use crate::domain::aggregate::{AggregateError, AggregateRequest};
use crate::domain::committee::{Decision, MemberName, MemberVote, Outcome, Vote};
use crate::domain::dua::{Amendment, Cidr, DownloadLimit, DuaNumber, DuaTerms, Networks};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::level::Level;
use crate::domain::release::{ReleaseId, ReleaseStatus, Transition};
use crate::domain::request::{DataRequest, Irb, RequestedElement, RowFilters, YearRange};
use crate::http::{ApiError, AppState};
use crate::policy::{ElementId, FileType};
use crate::release::{action_for, nobody_facts, Caller, ListFilter, ReleaseRecord, ReleaseService};

// ----- request bodies -----

/// One requested element.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElementBody {
    /// The element's id, as `GET /api/v1/catalog` lists it.
    element: String,
    /// Why the purpose needs it (minimum necessary).
    #[serde(default)]
    reason: Option<String>,
}

/// The IRB overseeing the use, when one does.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IrbBody {
    /// The board's name.
    board: String,
    /// The protocol number.
    #[serde(default)]
    protocol: Option<String>,
}

/// Inclusive service years.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YearsBody {
    /// The first service year.
    first: i32,
    /// The last service year (at least `first`).
    last: i32,
}

/// Row filters.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FiltersBody {
    /// The service years.
    years: YearsBody,
    /// Payer codes; empty: every payer.
    #[serde(default)]
    payers: Vec<String>,
}

/// `POST /api/v1/requests` body (also the request as shown back). An aggregate request names
/// `aggregate` and no `elements`: its dimensions' elements stand for them.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// The release level asked for.
    level: Level,
    /// Dataset ids (`med_elig`, `med_claim`, ...), as the catalog lists them.
    datasets: Vec<String>,
    /// The row-level elements asked for, each with its reason; none for an aggregate.
    #[serde(default)]
    elements: Vec<ElementBody>,
    /// Appendix C elements asked for by name.
    #[serde(default)]
    supplemental: Vec<String>,
    /// What the data is for.
    purpose: String,
    /// The IRB overseeing the use, if one does.
    #[serde(default)]
    irb: Option<IrbBody>,
    /// Who finally receives the data.
    ultimate_recipient: String,
    /// How the recipient protects it.
    security_measures: String,
    /// What will be published from it.
    publication_plan: String,
    /// Which rows: service years and payers.
    filters: FiltersBody,
    /// An aggregate table in place of row-level elements (Level I only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aggregate: Option<AggregateRequest>,
}

/// Body of the transition routes: an optional reason, kept in the release's history.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why, kept in the release's history.
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT /api/v1/releases/{id}/elements` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NarrowBody {
    /// The element ids to keep: a subset of those approved.
    elements: Vec<String>,
    /// Why, kept in the release's history.
    #[serde(default)]
    reason: Option<String>,
}

/// One member's vote.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// The member's name.
    member: String,
    /// Their vote.
    vote: VoteName,
}

/// A vote on the wire.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteName {
    /// In favour.
    Yes,
    /// Against.
    No,
    /// Present, not voting.
    Abstain,
}

impl From<VoteName> for Vote {
    fn from(v: VoteName) -> Vote {
        match v {
            VoteName::Yes => Vote::Yes,
            VoteName::No => Vote::No,
            VoteName::Abstain => Vote::Abstain,
        }
    }
}

impl From<Vote> for VoteName {
    fn from(v: Vote) -> VoteName {
        match v {
            Vote::Yes => VoteName::Yes,
            Vote::No => VoteName::No,
            Vote::Abstain => VoteName::Abstain,
        }
    }
}

/// `POST /api/v1/releases/{id}/committee` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitteeBody {
    /// The members present (a quorum is needed).
    present: Vec<String>,
    /// Each present member's vote.
    votes: Vec<VoteBody>,
    /// The executive director's vote, when cast.
    #[serde(default)]
    director: Option<VoteName>,
    /// Why, kept in the release's history.
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/releases/{id}/dua` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DuaBody {
    /// The DUA's number (unique).
    number: String,
    /// The first day it is in force.
    #[schema(format = Date)]
    effective: String,
    /// The last day it is in force.
    #[schema(format = Date)]
    expiry: String,
    /// The users who may download (each of the requesting organization).
    authorized_users: Vec<Uuid>,
    /// The person answerable for the data, who attests its destruction.
    responsible: Uuid,
    /// Downloads allowed per file and user.
    download_limit: u32,
    /// CIDR blocks downloads must come from; empty: anywhere.
    #[serde(default)]
    networks: Vec<String>,
    /// Days after the end of the DUA to destroy every copy.
    destruction_days: u16,
    /// Why, kept in the release's history.
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT /api/v1/releases/{id}/dua` body: only the terms that change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmendBody {
    /// A new last day.
    #[serde(default)]
    #[schema(format = Date)]
    expiry: Option<String>,
    /// Users to authorize.
    #[serde(default)]
    add_users: Vec<Uuid>,
    /// Users to remove.
    #[serde(default)]
    remove_users: Vec<Uuid>,
    /// A new responsible person.
    #[serde(default)]
    responsible: Option<Uuid>,
    /// A new download limit.
    #[serde(default)]
    download_limit: Option<u32>,
    /// An empty list removes the network restriction.
    #[serde(default)]
    networks: Option<Vec<String>>,
    /// A new destruction period in days.
    #[serde(default)]
    destruction_days: Option<u16>,
    /// Why, kept in the release's history.
    #[serde(default)]
    reason: Option<String>,
}

// ----- responses -----

/// The subcommittee's recorded decision and its count.
#[derive(Debug, Serialize)]
pub struct CommitteeDto {
    present: Vec<String>,
    votes: Vec<VoteBody>,
    director: Option<VoteName>,
    approved: Option<bool>,
    affirmative: Option<usize>,
}

/// The DUA in force.
#[derive(Debug, Serialize)]
pub struct DuaDto {
    number: String,
    version: i64,
    effective: String,
    expiry: String,
    authorized_users: Vec<String>,
    responsible: String,
    download_limit: i64,
    networks: Vec<String>,
    destruction_days: i64,
    destruction_due: Option<String>,
}

/// A release.
#[derive(Debug, Serialize)]
pub struct ReleaseDto {
    id: String,
    organization_id: String,
    requested_by: String,
    level: Level,
    status: ReleaseStatus,
    allowed_transitions: Vec<Transition>,
    request: RequestBody,
    approved_elements: Vec<String>,
    committee: Option<CommitteeDto>,
    approved_by: Option<String>,
    approved_at: Option<String>,
    dua: Option<DuaDto>,
    created_at: String,
    updated_at: String,
}

/// One history entry.
#[derive(Debug, Serialize)]
pub struct HistoryDto {
    entry: i64,
    at: String,
    actor: String,
    kind: String,
    from: ReleaseStatus,
    to: ReleaseStatus,
    reason: Option<String>,
}

/// The letter's signature.
#[derive(Debug, Serialize)]
pub struct SignatureDto {
    algorithm: &'static str,
    signature: String,
    public_key: String,
    dua_version: i64,
}

/// The server's public signing key.
#[derive(Debug, Serialize)]
pub struct SigningKeyDto {
    algorithm: &'static str,
    public_key: String,
}

fn request_dto(request: &DataRequest) -> RequestBody {
    RequestBody {
        level: request.level,
        datasets: request
            .datasets
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect(),
        // An aggregate request is shown as it is filed: its dimensions, no element list.
        elements: request
            .elements
            .iter()
            .filter(|_| request.aggregate.is_none())
            .map(|e| ElementBody {
                element: e.element.to_string(),
                reason: e.reason.clone(),
            })
            .collect(),
        supplemental: request
            .supplemental
            .iter()
            .map(ToString::to_string)
            .collect(),
        purpose: request.purpose.clone(),
        irb: match &request.irb {
            Irb::NotUsed => None,
            Irb::Used { board, protocol } => Some(IrbBody {
                board: board.clone(),
                protocol: protocol.clone(),
            }),
        },
        ultimate_recipient: request.ultimate_recipient.clone(),
        security_measures: request.security_measures.clone(),
        publication_plan: request.publication_plan.clone(),
        filters: FiltersBody {
            years: YearsBody {
                first: request.filters.years.first,
                last: request.filters.years.last,
            },
            payers: request.filters.payers.clone(),
        },
        aggregate: request.aggregate.clone(),
    }
}

fn release_dto(record: &ReleaseRecord) -> Result<ReleaseDto, ApiError> {
    let row = &record.row;
    let committee = record.committee.as_ref().map(|d| {
        let outcome = crate::domain::committee::decide(d).ok();
        CommitteeDto {
            present: d.present.iter().map(|m| m.as_str().to_owned()).collect(),
            votes: d
                .votes
                .iter()
                .map(|v| VoteBody {
                    member: v.member.as_str().to_owned(),
                    vote: v.vote.into(),
                })
                .collect(),
            director: d.director.map(VoteName::from),
            approved: outcome.map(|o| matches!(o, Outcome::Approved(_))),
            affirmative: outcome.map(|o| o.tally().affirmative()),
        }
    });
    let terms = record.dua_terms()?;
    let dua = record.dua.as_ref().map(|d| DuaDto {
        number: d.number.clone(),
        version: d.version,
        effective: d.effective.clone(),
        expiry: d.expiry.clone(),
        authorized_users: d.users.iter().map(ToString::to_string).collect(),
        responsible: d.responsible.to_string(),
        download_limit: d.download_limit,
        networks: serde_json::from_str(&d.networks).unwrap_or_default(),
        destruction_days: d.destruction_days,
        destruction_due: terms.as_ref().map(|t| t.destruction_due().to_string()),
    });
    Ok(ReleaseDto {
        id: row.id.to_string(),
        organization_id: row.org_id.to_string(),
        requested_by: row.requested_by.to_string(),
        level: row.level,
        status: row.status,
        allowed_transitions: row.status.allowed_transitions(),
        request: request_dto(&record.request),
        approved_elements: record.approved.iter().map(ToString::to_string).collect(),
        committee,
        approved_by: row.approved_by.map(|u| u.to_string()),
        approved_at: row.approved_at.map(rfc3339),
        dua,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

// ----- parsing -----

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

fn parse_element(text: &str) -> Result<ElementId, ApiError> {
    ElementId::parse(text).map_err(|e| bad(e.to_string()))
}

fn parse_day(field: &str, text: &str) -> Result<Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|_| {
        bad(format!(
            "`{field}`: `{text}` is not a date (expected YYYY-MM-DD)"
        ))
    })
}

fn parse_networks(list: &[String]) -> Result<Networks, ApiError> {
    if list.is_empty() {
        return Ok(Networks::Any);
    }
    let cidrs = list
        .iter()
        .map(|c| Cidr::parse(c).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Networks::only(cidrs).map_err(|e| bad(e.to_string()))
}

fn to_request(
    body: RequestBody,
    principal: &crate::auth::Principal,
) -> Result<DataRequest, ApiError> {
    let aggregate = body.aggregate;
    let mut elements = body
        .elements
        .iter()
        .map(|e| {
            Ok(RequestedElement {
                element: parse_element(&e.element)?,
                reason: e.reason.clone(),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    if let Some(aggregate) = &aggregate {
        if !elements.is_empty() {
            return Err(bad(AggregateError::ElementsListed.to_string()));
        }
        // The dimensions' elements stand for the element list in review and approval.
        elements = aggregate
            .dimensions
            .iter()
            .map(|d| RequestedElement {
                element: d.element.clone(),
                reason: None,
            })
            .collect();
    }
    Ok(DataRequest {
        organization: principal.org_id,
        contact: principal.user_id,
        level: body.level,
        datasets: body
            .datasets
            .iter()
            .map(|d| d.parse::<FileType>().map_err(|e| bad(e.to_string())))
            .collect::<Result<_, _>>()?,
        elements,
        supplemental: body
            .supplemental
            .iter()
            .map(|e| parse_element(e))
            .collect::<Result<_, _>>()?,
        purpose: body.purpose,
        irb: match body.irb {
            None => Irb::NotUsed,
            Some(irb) => Irb::Used {
                board: irb.board,
                protocol: irb.protocol,
            },
        },
        ultimate_recipient: body.ultimate_recipient,
        security_measures: body.security_measures,
        publication_plan: body.publication_plan,
        filters: RowFilters {
            years: YearRange {
                first: body.filters.years.first,
                last: body.filters.years.last,
            },
            payers: body.filters.payers,
        },
        aggregate,
    })
}

/// A body that may be empty (then the defaults apply).
pub(super) fn parse_optional<T: for<'de> Deserialize<'de> + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(body)
}

fn parse_list_query(query: Option<&str>) -> Result<ListFilter, ApiError> {
    let mut filter = ListFilter::default();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "state" => {
                for name in value.split(',').filter(|v| !v.is_empty()) {
                    filter.statuses.push(
                        name.parse()
                            .map_err(
                                |e: crate::domain::release::ReleaseError| bad(e.to_string()),
                            )?,
                    );
                }
            }
            "organization" => {
                filter.org = Some(OrgId(Uuid::parse_str(value).map_err(|_| {
                    bad(format!(
                        "`organization`: `{value}` is not an organization id"
                    ))
                })?));
            }
            "level" => {
                filter.level = Some(
                    value
                        .parse()
                        .map_err(|e: crate::domain::level::ParseLevelError| bad(e.to_string()))?,
                );
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter `{other}`: expected state, organization or level"
                )))
            }
        }
    }
    Ok(filter)
}

// ----- handlers -----

/// Loads the release and authorizes `action` on it; an unknown id is authorized against
/// facts that match nobody, then answered 404.
/// [`load_checked`] for a read, which is logged as granted.
async fn load_read(
    state: &AppState,
    a: &Authed,
    id: &str,
    what: &'static str,
) -> Result<ReleaseRecord, ApiError> {
    let record = load_checked(state, a, id, Action::ReadRelease).await?;
    state
        .releases
        .log_read(&a.principal, record.row.id, Reason::new(what), &a.client)
        .await?;
    Ok(record)
}

async fn load_checked(
    state: &AppState,
    a: &Authed,
    id: &str,
    action: Action,
) -> Result<ReleaseRecord, ApiError> {
    let record = match id.parse::<ReleaseId>() {
        Ok(id) => state.releases.record(id).await?,
        Err(_) => None,
    };
    let facts = record
        .as_ref()
        .map_or_else(nobody_facts, ReleaseRecord::facts);
    a.authorize(state, action, &Resource::Release(&facts))
        .await?;
    record.ok_or(ApiError::NotFound)
}

pub(super) async fn create_request(
    State(state): State<AppState>,
    a: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<ReleaseDto>), ApiError> {
    a.authorize(&state, Action::CreateRequest, &Resource::Releases)
        .await?;
    let body: RequestBody = parse_json(&body)?;
    let request = to_request(body, &a.principal)?;
    let record = state
        .releases
        .create_request(&a.principal, request, &a.client)
        .await?;
    Ok((StatusCode::CREATED, Json(release_dto(&record)?)))
}

async fn list(
    state: &AppState,
    a: &Authed,
    query: Option<&str>,
    default_statuses: &[ReleaseStatus],
) -> Result<Json<Vec<ReleaseDto>>, ApiError> {
    a.authorize(state, Action::ListReleases, &Resource::Releases)
        .await?;
    let mut filter = parse_list_query(query)?;
    if filter.statuses.is_empty() {
        filter.statuses = default_statuses.to_vec();
    }
    let records = state
        .releases
        .list(Caller::Person(&a.principal), &filter)
        .await?;
    Ok(Json(
        records
            .iter()
            .map(release_dto)
            .collect::<Result<Vec<_>, _>>()?,
    ))
}

pub(super) async fn list_requests(
    State(state): State<AppState>,
    a: Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<ReleaseDto>>, ApiError> {
    // Requests are releases not yet decided.
    let pending = [
        ReleaseStatus::Draft,
        ReleaseStatus::Submitted,
        ReleaseStatus::InReview,
    ];
    list(&state, &a, query.as_deref(), &pending).await
}

pub(super) async fn list_releases(
    State(state): State<AppState>,
    a: Authed,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<ReleaseDto>>, ApiError> {
    list(&state, &a, query.as_deref(), &[]).await
}

pub(super) async fn show(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<ReleaseDto>, ApiError> {
    let record = load_read(&state, &a, &id, "release read").await?;
    Ok(Json(release_dto(&record)?))
}

pub(super) async fn history(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryDto>>, ApiError> {
    let record = load_read(&state, &a, &id, "history read").await?;
    let entries = state.releases.history(record.row.id).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|h| HistoryDto {
                entry: h.entry,
                at: rfc3339(h.at),
                actor: h.actor,
                kind: h.kind,
                from: h.from_status,
                to: h.to_status,
                reason: h.reason,
            })
            .collect(),
    ))
}

async fn transition(
    state: AppState,
    a: Authed,
    id: String,
    body: Bytes,
    transition: Transition,
) -> Result<Json<ReleaseDto>, ApiError> {
    let record = load_checked(&state, &a, &id, action_for(transition)).await?;
    let body: ReasonBody = parse_optional(&body)?;
    let record = state
        .releases
        .transition(
            Caller::Person(&a.principal),
            record.row.id,
            transition,
            body.reason.as_deref(),
            &a.client,
        )
        .await?;
    Ok(Json(release_dto(&record)?))
}

macro_rules! transition_handler {
    ($($name:ident => $transition:expr;)*) => {$(
        pub(super) async fn $name(
            State(state): State<AppState>,
            a: Authed,
            Path(id): Path<String>,
            body: Bytes,
        ) -> Result<Json<ReleaseDto>, ApiError> {
            transition(state, a, id, body, $transition).await
        }
    )*};
}

transition_handler! {
    submit => Transition::Submit;
    review => Transition::StartReview;
    approve => Transition::Approve;
    deny => Transition::Deny;
    withdraw => Transition::Withdraw;
    revoke => Transition::Revoke;
}

pub(super) async fn narrow(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReleaseDto>, ApiError> {
    let record = load_checked(&state, &a, &id, Action::NarrowRelease).await?;
    let body: NarrowBody = parse_json(&body)?;
    let mut elements = BTreeSet::new();
    for e in &body.elements {
        if !elements.insert(parse_element(e)?) {
            return Err(bad(format!("element `{e}` is listed more than once")));
        }
    }
    let record = state
        .releases
        .narrow(
            &a.principal,
            record.row.id,
            &elements,
            body.reason.as_deref(),
            &a.client,
        )
        .await?;
    Ok(Json(release_dto(&record)?))
}

pub(super) async fn record_committee(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReleaseDto>, ApiError> {
    let record = load_checked(&state, &a, &id, Action::RecordCommitteeDecision).await?;
    let body: CommitteeBody = parse_json(&body)?;
    let member = |m: &str| MemberName::parse(m).map_err(|e| bad(e.to_string()));
    let decision = Decision {
        present: body
            .present
            .iter()
            .map(|m| member(m))
            .collect::<Result<_, _>>()?,
        votes: body
            .votes
            .iter()
            .map(|v| {
                Ok(MemberVote {
                    member: member(&v.member)?,
                    vote: v.vote.into(),
                })
            })
            .collect::<Result<_, ApiError>>()?,
        director: body.director.map(Vote::from),
    };
    let (record, _) = state
        .releases
        .record_decision(
            &a.principal,
            record.row.id,
            &decision,
            body.reason.as_deref(),
            &a.client,
        )
        .await?;
    Ok(Json(release_dto(&record)?))
}

pub(super) async fn execute_dua(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReleaseDto>, ApiError> {
    let record = load_checked(&state, &a, &id, action_for(Transition::ExecuteDua)).await?;
    let body: DuaBody = parse_json(&body)?;
    let terms = DuaTerms {
        number: DuaNumber::parse(&body.number).map_err(|e| bad(e.to_string()))?,
        effective: parse_day("effective", &body.effective)?,
        expiry: parse_day("expiry", &body.expiry)?,
        authorized_users: body.authorized_users.iter().copied().map(UserId).collect(),
        responsible: UserId(body.responsible),
        download_limit: DownloadLimit::new(body.download_limit).map_err(|e| bad(e.to_string()))?,
        networks: parse_networks(&body.networks)?,
        destruction_days: body.destruction_days,
    };
    let record = state
        .releases
        .execute_dua(
            &a.principal,
            record.row.id,
            terms,
            body.reason.as_deref(),
            &a.client,
        )
        .await?;
    Ok(Json(release_dto(&record)?))
}

pub(super) async fn amend_dua(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ReleaseDto>, ApiError> {
    let record = load_checked(&state, &a, &id, Action::AmendDua).await?;
    let body: AmendBody = parse_json(&body)?;
    let amendment = Amendment {
        expiry: body
            .expiry
            .as_deref()
            .map(|e| parse_day("expiry", e))
            .transpose()?,
        add_users: body.add_users.iter().copied().map(UserId).collect(),
        remove_users: body.remove_users.iter().copied().map(UserId).collect(),
        responsible: body.responsible.map(UserId),
        download_limit: body
            .download_limit
            .map(|n| DownloadLimit::new(n).map_err(|e| bad(e.to_string())))
            .transpose()?,
        networks: body.networks.as_deref().map(parse_networks).transpose()?,
        destruction_days: body.destruction_days,
    };
    let record = state
        .releases
        .amend_dua(
            &a.principal,
            record.row.id,
            &amendment,
            body.reason.as_deref(),
            &a.client,
        )
        .await?;
    Ok(Json(release_dto(&record)?))
}

pub(super) async fn letter(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = load_read(&state, &a, &id, "approval letter read").await?;
    let letter = state
        .releases
        .letter(record.row.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let pdf = ReleaseService::letter_pdf(&letter)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"approval-letter-{}.pdf\"",
                    record.row.id
                ),
            ),
        ],
        pdf,
    )
        .into_response())
}

pub(super) async fn letter_signature(
    State(state): State<AppState>,
    a: Authed,
    Path(id): Path<String>,
) -> Result<Json<SignatureDto>, ApiError> {
    let record = load_read(&state, &a, &id, "approval letter signature read").await?;
    let letter = state
        .releases
        .letter(record.row.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(SignatureDto {
        algorithm: "ed25519",
        signature: letter.signature,
        public_key: letter.public_key,
        dua_version: letter.dua_version,
    }))
}

pub(super) async fn signing_key(
    State(state): State<AppState>,
    a: Authed,
) -> Result<Json<SigningKeyDto>, ApiError> {
    a.authorize(&state, Action::ReadSigningKey, &Resource::ServerKeys)
        .await?;
    Ok(Json(SigningKeyDto {
        algorithm: "ed25519",
        public_key: state.signer.public_hex(),
    }))
}
