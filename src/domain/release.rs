//! The release lifecycle as a pure state machine: which transitions exist, from which states,
//! and who may perform each one. The caller (HTTP handler, CLI, scheduled job) checks the actor
//! against [`Transition::performers`], applies the transition with [`ReleaseStatus::apply`] and
//! writes the access-log event; nothing here does I/O.
//!
//! ```text
//! draft -> submitted -> in_review -> approved -> dua_executed -> extracting -> available
//! extracting -> dua_executed                      (job failed or cancelled; IT may retry)
//! draft | submitted | in_review | approved -> withdrawn
//! submitted | in_review -> denied
//! dua_executed | extracting | available -> expired
//! approved | dua_executed | extracting | available -> revoked
//! available | expired | revoked -> destruction_demanded -> destroyed
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A release (one data request and everything decided about it).
// Kept here rather than in `ids.rs` because that file belongs to the identity work in progress;
// it should move there (same shape as the other typed ids) once that lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReleaseId(pub Uuid);

impl ReleaseId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ReleaseId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a release is in its lifecycle (PRODUCT.md, "Release lifecycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Being written by the requester; nobody else acts on it yet.
    Draft,
    /// Filed with the agency (seed 001 sections 6.2 A, 7.2 A, 8.2 A: "made in writing by filing
    /// an application").
    Submitted,
    /// Under review: completeness, minimum necessary, and for Level III the subcommittee.
    InReview,
    /// Approved by the executive director; the DUA is not yet executed, so nothing may be
    /// extracted (seed 001 section 4.2).
    Approved,
    /// The DUA is executed; IT may extract (seed 000 steps 5-6).
    DuaExecuted,
    /// An extract job is building the files.
    Extracting,
    /// Files are offered to the DUA's authorized users; the only state that allows downloads.
    Available,
    /// The DUA term ended (seed 001 section 4.3 K); downloads stop.
    Expired,
    /// The executive director stopped access (seed 001 sections 3.3 K, 4.3 I).
    Revoked,
    /// Return or destruction of the data was demanded (seed 001 sections 3.3 J-K, 4.3 K).
    DestructionDemanded,
    /// Destruction is confirmed: the server's copies are erased and the recipient's certificate
    /// is accepted. Terminal.
    Destroyed,
    /// The request was denied (seed 001 section 3.3 F). Terminal and not reviewable (3.1 C).
    Denied,
    /// The requester withdrew the request before any data was released. Terminal.
    Withdrawn,
}

/// Errors of this module: names that do not parse, and refused transitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The text is not a release status name.
    #[error("unknown release status `{0}`")]
    UnknownStatus(String),
    /// The text is not a transition name.
    #[error("unknown release transition `{0}`")]
    UnknownTransition(String),
    /// The transition is not allowed from the current state.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
}

impl ReleaseStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ReleaseStatus; 13] = [
        ReleaseStatus::Draft,
        ReleaseStatus::Submitted,
        ReleaseStatus::InReview,
        ReleaseStatus::Approved,
        ReleaseStatus::DuaExecuted,
        ReleaseStatus::Extracting,
        ReleaseStatus::Available,
        ReleaseStatus::Expired,
        ReleaseStatus::Revoked,
        ReleaseStatus::DestructionDemanded,
        ReleaseStatus::Destroyed,
        ReleaseStatus::Denied,
        ReleaseStatus::Withdrawn,
    ];

    /// The stable snake_case name used in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Draft => "draft",
            ReleaseStatus::Submitted => "submitted",
            ReleaseStatus::InReview => "in_review",
            ReleaseStatus::Approved => "approved",
            ReleaseStatus::DuaExecuted => "dua_executed",
            ReleaseStatus::Extracting => "extracting",
            ReleaseStatus::Available => "available",
            ReleaseStatus::Expired => "expired",
            ReleaseStatus::Revoked => "revoked",
            ReleaseStatus::DestructionDemanded => "destruction_demanded",
            ReleaseStatus::Destroyed => "destroyed",
            ReleaseStatus::Denied => "denied",
            ReleaseStatus::Withdrawn => "withdrawn",
        }
    }

    /// The state reached by `transition`, or `None` when it is not allowed from `self`.
    ///
    /// This one match is the whole lifecycle; [`ReleaseStatus::apply`] and
    /// [`ReleaseStatus::allowed_transitions`] are derived from it so they cannot disagree.
    fn target(self, transition: Transition) -> Option<ReleaseStatus> {
        use ReleaseStatus as S;
        use Transition as T;
        match (self, transition) {
            (S::Draft, T::Submit) => Some(S::Submitted),
            (S::Submitted, T::StartReview) => Some(S::InReview),
            // The director may deny a request as soon as it is filed, without a formal review
            // (seed 001 section 3.3 F: authority "to deny any request"; 6.2 E, 7.2 F).
            (S::Submitted | S::InReview, T::Deny) => Some(S::Denied),
            (S::InReview, T::Approve) => Some(S::Approved),
            // The requester may withdraw until the DUA is executed: before that no data has been
            // released (seed 001 section 4.2), and an applicant who declines to sign the DUA must
            // not leave the release stuck in `approved`.
            (S::Draft | S::Submitted | S::InReview | S::Approved, T::Withdraw) => {
                Some(S::Withdrawn)
            }
            (S::Approved, T::ExecuteDua) => Some(S::DuaExecuted),
            // Extraction only after the DUA is executed (seed 001 sections 4.2, 6.2 I, 7.2 M,
            // 8.2 J; seed 000 steps 5-6).
            (S::DuaExecuted, T::StartExtraction) => Some(S::Extracting),
            (S::Extracting, T::ExtractionFinished) => Some(S::Available),
            // A failed or cancelled job leaves nothing offered; IT may start again.
            (S::Extracting, T::ExtractionFailed | T::CancelExtraction) => Some(S::DuaExecuted),
            // The DUA term can end before the files were ever offered (seed 001 section 4.3 K:
            // "the term of use"); the scheduled job expires whatever is past its term.
            (S::DuaExecuted | S::Extracting | S::Available, T::Expire) => Some(S::Expired),
            // "The Executive Director reserves the right to stop access to Data even after
            // approval" (seed 001 section 3.3 K; also 3.3 J and 4.3 I).
            (S::Approved | S::DuaExecuted | S::Extracting | S::Available, T::Revoke) => {
                Some(S::Revoked)
            }
            // Return or destruction when use is complete or when directed (seed 001 sections
            // 3.3 J-K, 4.3 K second paragraph); a demand on an available release stops its
            // downloads in the same change. The destruction service also refuses a release
            // whose files were never offered: there is nothing anyone could hold.
            (S::Available | S::Expired | S::Revoked, T::DemandDestruction) => {
                Some(S::DestructionDemanded)
            }
            (S::DestructionDemanded, T::ConfirmDestruction) => Some(S::Destroyed),
            _ => None,
        }
    }

    /// Applies `transition`, or refuses it naming the current state and what is allowed.
    pub fn apply(self, transition: Transition) -> Result<ReleaseStatus, IllegalTransition> {
        self.target(transition).ok_or_else(|| IllegalTransition {
            from: self,
            attempted: transition,
            allowed: self.allowed_transitions(),
        })
    }

    /// The transitions allowed from this state, in [`Transition::ALL`] order.
    pub fn allowed_transitions(self) -> Vec<Transition> {
        Transition::ALL
            .into_iter()
            .filter(|t| self.target(*t).is_some())
            .collect()
    }

    /// No transition leaves this state.
    pub fn is_terminal(self) -> bool {
        self.allowed_transitions().is_empty()
    }

    /// Whether recipients may download in this state (only `available`).
    pub fn allows_downloads(self) -> bool {
        self == ReleaseStatus::Available
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReleaseStatus {
    type Err = ReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReleaseStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ReleaseError::UnknownStatus(s.to_owned()))
    }
}

/// A step of the lifecycle; each one is one access-log event with actor and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The requester files the application (`draft -> submitted`).
    Submit,
    /// A reviewer takes the application up (`submitted -> in_review`).
    StartReview,
    /// The executive director approves (`in_review -> approved`); Level III needs the
    /// subcommittee's approval first (checked by the caller with `committee`).
    Approve,
    /// The director denies (`submitted | in_review -> denied`).
    Deny,
    /// The requester withdraws (`draft | submitted | in_review | approved -> withdrawn`).
    Withdraw,
    /// The DUA is signed by both sides and recorded (`approved -> dua_executed`).
    ExecuteDua,
    /// IT starts the extract job (`dua_executed -> extracting`).
    StartExtraction,
    /// The extract job sealed and stored every file (`extracting -> available`).
    ExtractionFinished,
    /// The extract job failed (`extracting -> dua_executed`).
    ExtractionFailed,
    /// IT cancelled the extract job (`extracting -> dua_executed`).
    CancelExtraction,
    /// The DUA term ended (`dua_executed | extracting | available -> expired`).
    Expire,
    /// The director stops access (`approved | dua_executed | extracting | available ->
    /// revoked`).
    Revoke,
    /// Return or destruction is demanded (`available | expired | revoked ->
    /// destruction_demanded`).
    DemandDestruction,
    /// Destruction is complete: the server's copies are erased and the recipient's attestation
    /// is accepted (`destruction_demanded -> destroyed`). Only the destruction service performs
    /// it, when both are true.
    ConfirmDestruction,
}

impl Transition {
    /// Every transition, in lifecycle order.
    pub const ALL: [Transition; 14] = [
        Transition::Submit,
        Transition::StartReview,
        Transition::Approve,
        Transition::Deny,
        Transition::Withdraw,
        Transition::ExecuteDua,
        Transition::StartExtraction,
        Transition::ExtractionFinished,
        Transition::ExtractionFailed,
        Transition::CancelExtraction,
        Transition::Expire,
        Transition::Revoke,
        Transition::DemandDestruction,
        Transition::ConfirmDestruction,
    ];

    /// The stable snake_case name used in the database, routes and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Submit => "submit",
            Transition::StartReview => "start_review",
            Transition::Approve => "approve",
            Transition::Deny => "deny",
            Transition::Withdraw => "withdraw",
            Transition::ExecuteDua => "execute_dua",
            Transition::StartExtraction => "start_extraction",
            Transition::ExtractionFinished => "extraction_finished",
            Transition::ExtractionFailed => "extraction_failed",
            Transition::CancelExtraction => "cancel_extraction",
            Transition::Expire => "expire",
            Transition::Revoke => "revoke",
            Transition::DemandDestruction => "demand_destruction",
            Transition::ConfirmDestruction => "confirm_destruction",
        }
    }

    /// Whether the server itself performs this transition (the extract job, a scheduled job,
    /// the operator at the server's shell). Which people may perform one is decided by
    /// `auth::authorize` from its one table, `GRANTS`.
    pub fn system_performs(self) -> bool {
        matches!(
            self,
            // `steward jobs start|cancel` at the shell; a cancelled job hands its release back.
            Transition::StartExtraction
                | Transition::CancelExtraction
                // Only the job knows whether every file was sealed and stored.
                | Transition::ExtractionFinished
                | Transition::ExtractionFailed
                // Expiry follows the DUA's dates; a person cannot expire a release early (that
                // is a revocation, which is logged as one).
                | Transition::Expire
                // Issued by the expiry job where configured (issue 5, "Expiry").
                | Transition::DemandDestruction
                // Only the destruction service knows that the erase is done and the
                // recipient's attestation accepted.
                | Transition::ConfirmDestruction
        )
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transition {
    type Err = ReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transition::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ReleaseError::UnknownTransition(s.to_owned()))
    }
}

/// A transition was attempted from a state that does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {attempted} a release that is {from}; {}", allowed_text(*from, allowed))]
pub struct IllegalTransition {
    /// The current state.
    pub from: ReleaseStatus,
    /// The transition that was refused.
    pub attempted: Transition,
    /// What is allowed from `from` (empty for a terminal state).
    pub allowed: Vec<Transition>,
}

fn allowed_text(from: ReleaseStatus, allowed: &[Transition]) -> String {
    if allowed.is_empty() {
        return format!("{from} is final: no transition is allowed");
    }
    let names: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
    format!("allowed from {from}: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseStatus as S;
    use Transition as T;

    /// The whole lifecycle written out: for each state, every transition that is allowed and
    /// where it leads. Every pair not listed here must be refused.
    const EXPECTED: &[(ReleaseStatus, &[(Transition, ReleaseStatus)])] = &[
        (
            S::Draft,
            &[(T::Submit, S::Submitted), (T::Withdraw, S::Withdrawn)],
        ),
        (
            S::Submitted,
            &[
                (T::StartReview, S::InReview),
                (T::Deny, S::Denied),
                (T::Withdraw, S::Withdrawn),
            ],
        ),
        (
            S::InReview,
            &[
                (T::Approve, S::Approved),
                (T::Deny, S::Denied),
                (T::Withdraw, S::Withdrawn),
            ],
        ),
        (
            S::Approved,
            &[
                (T::Withdraw, S::Withdrawn),
                (T::ExecuteDua, S::DuaExecuted),
                (T::Revoke, S::Revoked),
            ],
        ),
        (
            S::DuaExecuted,
            &[
                (T::StartExtraction, S::Extracting),
                (T::Expire, S::Expired),
                (T::Revoke, S::Revoked),
            ],
        ),
        (
            S::Extracting,
            &[
                (T::ExtractionFinished, S::Available),
                (T::ExtractionFailed, S::DuaExecuted),
                (T::CancelExtraction, S::DuaExecuted),
                (T::Expire, S::Expired),
                (T::Revoke, S::Revoked),
            ],
        ),
        (
            S::Available,
            &[
                (T::Expire, S::Expired),
                (T::Revoke, S::Revoked),
                (T::DemandDestruction, S::DestructionDemanded),
            ],
        ),
        (
            S::Expired,
            &[(T::DemandDestruction, S::DestructionDemanded)],
        ),
        (
            S::Revoked,
            &[(T::DemandDestruction, S::DestructionDemanded)],
        ),
        (
            S::DestructionDemanded,
            &[(T::ConfirmDestruction, S::Destroyed)],
        ),
        (S::Destroyed, &[]),
        (S::Denied, &[]),
        (S::Withdrawn, &[]),
    ];

    fn expected(from: ReleaseStatus, t: Transition) -> Option<ReleaseStatus> {
        let (_, row) = EXPECTED
            .iter()
            .find(|(s, _)| *s == from)
            .expect("every state has a row");
        row.iter().find(|(tt, _)| *tt == t).map(|(_, to)| *to)
    }

    #[test]
    fn table_covers_every_state_once() {
        let states: Vec<_> = EXPECTED.iter().map(|(s, _)| *s).collect();
        assert_eq!(states, S::ALL.to_vec());
    }

    #[test]
    fn every_state_and_transition_pair() {
        let mut checked = 0;
        for from in S::ALL {
            for t in T::ALL {
                checked += 1;
                match (from.apply(t), expected(from, t)) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} --{t}-->"),
                    (Err(err), None) => {
                        assert_eq!(err.from, from);
                        assert_eq!(err.attempted, t);
                        assert_eq!(err.allowed, from.allowed_transitions());
                        let msg = err.to_string();
                        assert!(
                            msg.contains(from.as_str()) && msg.contains(t.as_str()),
                            "{msg}"
                        );
                        for allowed in &err.allowed {
                            assert!(msg.contains(allowed.as_str()), "{msg}");
                        }
                    }
                    (got, want) => panic!("{from} --{t}-->: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(checked, 13 * 14);
    }

    #[test]
    fn allowed_transitions_match_the_table() {
        for (from, row) in EXPECTED {
            let mut want: Vec<_> = row.iter().map(|(t, _)| *t).collect();
            want.sort_by_key(|t| T::ALL.iter().position(|x| x == t));
            assert_eq!(from.allowed_transitions(), want, "{from}");
        }
    }

    #[test]
    fn illegal_transition_message_names_state_attempt_and_allowed() {
        let err = S::Draft.apply(T::Approve).expect_err("illegal");
        assert_eq!(
            err.to_string(),
            "cannot approve a release that is draft; allowed from draft: submit, withdraw"
        );
        let err = S::Destroyed.apply(T::Revoke).expect_err("illegal");
        assert_eq!(
            err.to_string(),
            "cannot revoke a release that is destroyed; destroyed is final: no transition is allowed"
        );
    }

    #[test]
    fn terminal_states_and_downloads() {
        let terminal: Vec<_> = S::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, vec![S::Destroyed, S::Denied, S::Withdrawn]);
        let downloads: Vec<_> = S::ALL
            .into_iter()
            .filter(|s| s.allows_downloads())
            .collect();
        assert_eq!(downloads, vec![S::Available]);
    }

    #[test]
    fn every_state_is_reachable_from_draft() {
        let mut reached = vec![S::Draft];
        let mut i = 0;
        while i < reached.len() {
            for t in T::ALL {
                if let Ok(to) = reached[i].apply(t) {
                    if !reached.contains(&to) {
                        reached.push(to);
                    }
                }
            }
            i += 1;
        }
        reached.sort();
        assert_eq!(reached, S::ALL.to_vec());
    }

    #[test]
    fn the_server_performs_only_its_own_transitions() {
        let system: Vec<Transition> = T::ALL.into_iter().filter(|t| t.system_performs()).collect();
        assert_eq!(
            system,
            [
                T::StartExtraction,
                T::ExtractionFinished,
                T::ExtractionFailed,
                T::CancelExtraction,
                T::Expire,
                T::DemandDestruction,
                T::ConfirmDestruction,
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<ReleaseStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).expect("ser"),
                format!("\"{}\"", s.as_str())
            );
            assert_eq!(
                serde_json::from_str::<ReleaseStatus>(&format!("\"{s}\"")).expect("de"),
                s
            );
        }
        for t in T::ALL {
            assert_eq!(t.as_str().parse::<Transition>(), Ok(t));
            assert_eq!(
                serde_json::to_string(&t).expect("ser"),
                format!("\"{}\"", t.as_str())
            );
        }
        assert_eq!(
            "Approved".parse::<ReleaseStatus>(),
            Err(ReleaseError::UnknownStatus("Approved".into()))
        );
        assert_eq!(
            "approve ".parse::<Transition>(),
            Err(ReleaseError::UnknownTransition("approve ".into()))
        );
    }
}
