//! How a request and a subcommittee decision are kept in the database: JSON through these
//! serde types, so the domain types need no serde and the stored shape is written down in one
//! place. Reading back re-parses every id, so a stored row cannot smuggle in an invalid one.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::aggregate::AggregateRequest;
use crate::domain::committee::{Decision, MemberName, MemberVote, Vote};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::level::Level;
use crate::domain::request::{DataRequest, Irb, RequestedElement, RowFilters, YearRange};
use crate::policy::{ElementId, FileType};

/// A stored value does not parse back.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// The JSON does not match the stored shape.
    #[error("stored release data is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored name (element, dataset, member, vote) does not parse.
    #[error("stored release data holds an invalid value: {0}")]
    Value(String),
}

/// One requested element as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredElement {
    element: String,
    reason: Option<String>,
}

/// The IRB answer as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredIrb {
    board: String,
    protocol: Option<String>,
}

/// A data request as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRequest {
    organization: Uuid,
    contact: Uuid,
    level: Level,
    datasets: Vec<String>,
    elements: Vec<StoredElement>,
    supplemental: Vec<String>,
    purpose: String,
    irb: Option<StoredIrb>,
    ultimate_recipient: String,
    security_measures: String,
    publication_plan: String,
    first_year: i32,
    last_year: i32,
    payers: Vec<String>,
    /// Absent in rows written before aggregate releases existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aggregate: Option<AggregateRequest>,
}

fn element(text: &str) -> Result<ElementId, StoredError> {
    ElementId::parse(text).map_err(|e| StoredError::Value(e.to_string()))
}

/// The request as JSON.
pub fn request_to_json(request: &DataRequest) -> Result<String, StoredError> {
    let stored = StoredRequest {
        organization: request.organization.0,
        contact: request.contact.0,
        level: request.level,
        datasets: request
            .datasets
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect(),
        elements: request
            .elements
            .iter()
            .map(|e| StoredElement {
                element: e.element.as_str().to_owned(),
                reason: e.reason.clone(),
            })
            .collect(),
        supplemental: request
            .supplemental
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect(),
        purpose: request.purpose.clone(),
        irb: match &request.irb {
            Irb::NotUsed => None,
            Irb::Used { board, protocol } => Some(StoredIrb {
                board: board.clone(),
                protocol: protocol.clone(),
            }),
        },
        ultimate_recipient: request.ultimate_recipient.clone(),
        security_measures: request.security_measures.clone(),
        publication_plan: request.publication_plan.clone(),
        first_year: request.filters.years.first,
        last_year: request.filters.years.last,
        payers: request.filters.payers.clone(),
        aggregate: request.aggregate.clone(),
    };
    Ok(serde_json::to_string(&stored)?)
}

/// The request back from JSON.
pub fn request_from_json(json: &str) -> Result<DataRequest, StoredError> {
    let s: StoredRequest = serde_json::from_str(json)?;
    Ok(DataRequest {
        organization: OrgId(s.organization),
        contact: UserId(s.contact),
        level: s.level,
        datasets: s
            .datasets
            .iter()
            .map(|d| FileType::from_str(d).map_err(|e| StoredError::Value(e.to_string())))
            .collect::<Result<_, _>>()?,
        elements: s
            .elements
            .iter()
            .map(|e| {
                Ok(RequestedElement {
                    element: element(&e.element)?,
                    reason: e.reason.clone(),
                })
            })
            .collect::<Result<_, StoredError>>()?,
        supplemental: s
            .supplemental
            .iter()
            .map(|e| element(e))
            .collect::<Result<_, _>>()?,
        purpose: s.purpose,
        irb: match s.irb {
            None => Irb::NotUsed,
            Some(irb) => Irb::Used {
                board: irb.board,
                protocol: irb.protocol,
            },
        },
        ultimate_recipient: s.ultimate_recipient,
        security_measures: s.security_measures,
        publication_plan: s.publication_plan,
        filters: RowFilters {
            years: YearRange {
                first: s.first_year,
                last: s.last_year,
            },
            payers: s.payers,
        },
        aggregate: s.aggregate,
    })
}

/// Element ids as a JSON array.
pub fn elements_to_json(elements: &BTreeSet<ElementId>) -> Result<String, StoredError> {
    let names: Vec<&str> = elements.iter().map(ElementId::as_str).collect();
    Ok(serde_json::to_string(&names)?)
}

/// Element ids back from a JSON array.
pub fn elements_from_json(json: &str) -> Result<BTreeSet<ElementId>, StoredError> {
    let names: Vec<String> = serde_json::from_str(json)?;
    names.iter().map(|n| element(n)).collect()
}

/// The stable name of a vote.
pub fn vote_name(vote: Vote) -> &'static str {
    match vote {
        Vote::Yes => "yes",
        Vote::No => "no",
        Vote::Abstain => "abstain",
    }
}

/// A vote from its stable name.
pub fn parse_vote(text: &str) -> Result<Vote, StoredError> {
    match text {
        "yes" => Ok(Vote::Yes),
        "no" => Ok(Vote::No),
        "abstain" => Ok(Vote::Abstain),
        other => Err(StoredError::Value(format!(
            "`{other}` is not a vote (expected yes, no or abstain)"
        ))),
    }
}

/// One member's vote as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredVote {
    member: String,
    vote: String,
}

/// A decision as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDecision {
    present: Vec<String>,
    votes: Vec<StoredVote>,
    director: Option<String>,
}

/// The decision as JSON.
pub fn decision_to_json(decision: &Decision) -> Result<String, StoredError> {
    let stored = StoredDecision {
        present: decision
            .present
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        votes: decision
            .votes
            .iter()
            .map(|v| StoredVote {
                member: v.member.as_str().to_owned(),
                vote: vote_name(v.vote).to_owned(),
            })
            .collect(),
        director: decision.director.map(|v| vote_name(v).to_owned()),
    };
    Ok(serde_json::to_string(&stored)?)
}

/// The decision back from JSON.
pub fn decision_from_json(json: &str) -> Result<Decision, StoredError> {
    let s: StoredDecision = serde_json::from_str(json)?;
    let member = |m: &str| MemberName::parse(m).map_err(|e| StoredError::Value(e.to_string()));
    Ok(Decision {
        present: s
            .present
            .iter()
            .map(|m| member(m))
            .collect::<Result<_, _>>()?,
        votes: s
            .votes
            .iter()
            .map(|v| {
                Ok(MemberVote {
                    member: member(&v.member)?,
                    vote: parse_vote(&v.vote)?,
                })
            })
            .collect::<Result<_, StoredError>>()?,
        director: s.director.as_deref().map(parse_vote).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_round_trips() {
        let name = |n: &str| MemberName::parse(n).expect("name");
        let decision = Decision {
            present: vec![name("A"), name("B")],
            votes: vec![
                MemberVote {
                    member: name("A"),
                    vote: Vote::Yes,
                },
                MemberVote {
                    member: name("B"),
                    vote: Vote::Abstain,
                },
            ],
            director: Some(Vote::No),
        };
        let json = decision_to_json(&decision).expect("json");
        assert_eq!(decision_from_json(&json).expect("back"), decision);
    }
}
