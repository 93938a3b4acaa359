//! The Data Release Subcommittee's decision on a request (seed 001 section 12), recorded before
//! the executive director may approve a Level III release (sections 3.3 B, 3.3 E, 8.2 F).
//!
//! Section 12.3: "The Data Release Subcommittee requires four votes in the affirmative to take
//! action. If the Data Release Subcommittee is split or does not have a quorum, the Executive
//! Director may vote." [`decide`] turns a recorded meeting into an [`Outcome`] or refuses a
//! record that does not make sense.

use std::collections::BTreeSet;
use std::fmt;

use crate::domain::level::Level;

/// Seats on the subcommittee (seed 001 section 12.2: "shall include 6 members"). The board may
/// appoint more members (12.2); this constant changes with it.
pub const SEATED_MEMBERS: usize = 6;

/// Members who must be present for a quorum: a majority of the seats. The seed names a quorum
/// (12.3) without defining it; a simple majority of the members is the ordinary rule for a
/// board committee (4 of 6).
pub const QUORUM: usize = SEATED_MEMBERS / 2 + 1;

/// Affirmative votes needed "to take action" (seed 001 section 12.3). The director's vote, when
/// allowed, counts toward them.
pub const AFFIRMATIVE_VOTES_REQUIRED: usize = 4;

/// Longest member name accepted, in characters.
const MAX_NAME_CHARS: usize = 200;

/// Errors of this module; each names the member or the count at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitteeError {
    /// A member name is blank, too long or holds control characters.
    #[error("`{0}` is not a member name (1-200 characters, no control characters)")]
    BadMemberName(String),
    /// Nobody is recorded as present.
    #[error("no member is recorded as present")]
    NobodyPresent,
    /// More members are present than the subcommittee has seats.
    #[error(
        "{present} members recorded as present but the subcommittee has {SEATED_MEMBERS} seats"
    )]
    TooManyPresent {
        /// How many were recorded.
        present: usize,
    },
    /// A member is listed as present twice.
    #[error("member `{0}` is listed as present more than once")]
    DuplicateMember(MemberName),
    /// A member voted twice.
    #[error("member `{0}` has more than one vote")]
    DuplicateVote(MemberName),
    /// A vote is recorded for someone not present.
    #[error("member `{0}` voted but is not recorded as present")]
    VoteFromAbsentMember(MemberName),
    /// A present member has no vote recorded (an abstention must be recorded as one).
    #[error("member `{0}` is present but has no vote recorded (record an abstention explicitly)")]
    MissingVote(MemberName),
    /// The director voted although the subcommittee was neither split nor without quorum.
    #[error(
        "the executive director may vote only when the subcommittee is split or without quorum (seed 001 section 12.3); it was {0}"
    )]
    DirectorMayNotVote(Tally),
    /// The director's vote was recorded as an abstention: not voting is recorded as no vote.
    #[error("the executive director's abstention is recorded as no director vote")]
    DirectorAbstained,
    /// A Level III release has no recorded subcommittee decision.
    #[error("a Level III release needs the subcommittee's recorded decision before approval (seed 001 sections 3.3 B, 12)")]
    DecisionMissing,
    /// The recorded decision did not approve the release.
    #[error("the subcommittee did not approve: {0}")]
    NotApproved(Tally),
}

/// A member of the subcommittee, by name: members are board members and need not hold an
/// account in Steward.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberName(String);

impl MemberName {
    /// Parses a name: trimmed, 1 to 200 characters, no control characters.
    pub fn parse(s: &str) -> Result<MemberName, CommitteeError> {
        let name = s.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(CommitteeError::BadMemberName(s.to_owned()));
        }
        Ok(MemberName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Vote {
    /// In favour of releasing.
    Yes,
    /// Against.
    No,
    /// Present but not voting either way.
    Abstain,
}

/// One member's recorded vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberVote {
    /// Who voted.
    pub member: MemberName,
    /// How.
    pub vote: Vote,
}

/// The record of one meeting's decision on one request, as the director enters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Members present.
    pub present: Vec<MemberName>,
    /// Each present member's vote.
    pub votes: Vec<MemberVote>,
    /// The executive director's vote, allowed only to break a split or make up for a missing
    /// quorum (section 12.3).
    pub director: Option<Vote>,
}

/// The counted votes, kept with the outcome so the record can be shown and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Members present.
    pub present: usize,
    /// Members' affirmative votes.
    pub yes: usize,
    /// Members' negative votes.
    pub no: usize,
    /// Members' abstentions.
    pub abstain: usize,
    /// Whether a quorum was present.
    pub quorum: bool,
    /// Whether the members were split (as many yes as no votes, at least one of each).
    pub split: bool,
    /// The director's vote, when one was allowed and cast.
    pub director: Option<Vote>,
}

impl Tally {
    /// Affirmative votes including the director's.
    pub fn affirmative(&self) -> usize {
        self.yes + usize::from(self.director == Some(Vote::Yes))
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} present ({}), {} yes, {} no, {} abstaining",
            self.present,
            if self.quorum { "quorum" } else { "no quorum" },
            self.yes,
            self.no,
            self.abstain
        )?;
        if self.split {
            f.write_str(", split")?;
        }
        match self.director {
            Some(Vote::Yes) => f.write_str(", director yes"),
            Some(Vote::No) => f.write_str(", director no"),
            Some(Vote::Abstain) | None => Ok(()),
        }
    }
}

/// What the subcommittee decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least [`AFFIRMATIVE_VOTES_REQUIRED`] affirmative votes: the director may approve.
    Approved(Tally),
    /// Too few affirmative votes: the subcommittee took no action to release.
    NotApproved(Tally),
}

impl Outcome {
    /// The counted votes.
    pub fn tally(&self) -> &Tally {
        match self {
            Outcome::Approved(t) | Outcome::NotApproved(t) => t,
        }
    }
}

/// Counts a recorded meeting, refusing a record that does not make sense.
pub fn decide(decision: &Decision) -> Result<Outcome, CommitteeError> {
    if decision.present.is_empty() {
        return Err(CommitteeError::NobodyPresent);
    }
    if decision.present.len() > SEATED_MEMBERS {
        return Err(CommitteeError::TooManyPresent {
            present: decision.present.len(),
        });
    }
    let mut present = BTreeSet::new();
    for member in &decision.present {
        if !present.insert(member) {
            return Err(CommitteeError::DuplicateMember(member.clone()));
        }
    }
    let mut voted = BTreeSet::new();
    let (mut yes, mut no, mut abstain) = (0, 0, 0);
    for MemberVote { member, vote } in &decision.votes {
        if !present.contains(member) {
            return Err(CommitteeError::VoteFromAbsentMember(member.clone()));
        }
        if !voted.insert(member) {
            return Err(CommitteeError::DuplicateVote(member.clone()));
        }
        match vote {
            Vote::Yes => yes += 1,
            Vote::No => no += 1,
            Vote::Abstain => abstain += 1,
        }
    }
    if let Some(missing) = decision.present.iter().find(|m| !voted.contains(m)) {
        return Err(CommitteeError::MissingVote(missing.clone()));
    }
    let mut tally = Tally {
        present: present.len(),
        yes,
        no,
        abstain,
        quorum: present.len() >= QUORUM,
        // "Split": the members divided evenly. A 0-0 meeting (everyone abstaining) is not a
        // split; with no votes cast there is nothing for the director to break.
        split: yes == no && yes > 0,
        director: None,
    };
    match decision.director {
        None => {}
        Some(Vote::Abstain) => return Err(CommitteeError::DirectorAbstained),
        Some(vote) => {
            if tally.quorum && !tally.split {
                return Err(CommitteeError::DirectorMayNotVote(tally));
            }
            tally.director = Some(vote);
        }
    }
    Ok(if tally.affirmative() >= AFFIRMATIVE_VOTES_REQUIRED {
        Outcome::Approved(tally)
    } else {
        Outcome::NotApproved(tally)
    })
}

/// Whether the director may approve a release of `level` given the recorded outcome: Level III
/// needs an approving decision (seed 001 sections 3.3 B, 3.3 E); for Levels I and II the
/// subcommittee only advises (sections 6.2 D, 7.2 D), so any outcome or none is fine.
pub fn check_approval_allowed(
    level: Level,
    outcome: Option<&Outcome>,
) -> Result<(), CommitteeError> {
    match (level, outcome) {
        (Level::I | Level::II, _) | (Level::III, Some(Outcome::Approved(_))) => Ok(()),
        (Level::III, None) => Err(CommitteeError::DecisionMissing),
        (Level::III, Some(Outcome::NotApproved(t))) => Err(CommitteeError::NotApproved(*t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: usize) -> MemberName {
        MemberName::parse(&format!("Member {i}")).expect("name")
    }

    /// A meeting where member `i` casts `votes[i]`.
    fn meeting(votes: &[Vote], director: Option<Vote>) -> Decision {
        Decision {
            present: (0..votes.len()).map(name).collect(),
            votes: votes
                .iter()
                .enumerate()
                .map(|(i, v)| MemberVote {
                    member: name(i),
                    vote: *v,
                })
                .collect(),
            director,
        }
    }

    use Vote::{Abstain as A, No as N, Yes as Y};

    #[test]
    fn constants_follow_section_12() {
        assert_eq!(SEATED_MEMBERS, 6);
        assert_eq!(QUORUM, 4);
        assert_eq!(AFFIRMATIVE_VOTES_REQUIRED, 4);
    }

    #[test]
    fn four_yes_votes_approve() {
        let out = decide(&meeting(&[Y, Y, Y, Y, N, N], None)).expect("valid");
        assert!(matches!(out, Outcome::Approved(_)));
        assert_eq!(out.tally().affirmative(), 4);
        let out = decide(&meeting(&[Y, Y, Y, Y], None)).expect("valid");
        assert!(matches!(out, Outcome::Approved(_)));
    }

    #[test]
    fn a_majority_short_of_four_does_not_approve() {
        // 3 of 4 present is a majority but not the four affirmative votes of section 12.3.
        let out = decide(&meeting(&[Y, Y, Y, N], None)).expect("valid");
        assert!(matches!(out, Outcome::NotApproved(_)));
        let out = decide(&meeting(&[Y, Y, Y, N, A, A], None)).expect("valid");
        assert!(matches!(out, Outcome::NotApproved(t) if t.quorum && !t.split));
    }

    #[test]
    fn director_breaks_a_split() {
        let out = decide(&meeting(&[Y, Y, Y, N, N, N], Some(Y))).expect("valid");
        match out {
            Outcome::Approved(t) => {
                assert!(t.split && t.quorum);
                assert_eq!(t.affirmative(), 4);
                assert_eq!(t.director, Some(Y));
            }
            other => panic!("{other:?}"),
        }
        let out = decide(&meeting(&[Y, Y, Y, N, N, N], Some(N))).expect("valid");
        assert!(matches!(out, Outcome::NotApproved(_)));
        // Split without a director vote: no action.
        let out = decide(&meeting(&[Y, Y, Y, N, N, N], None)).expect("valid");
        assert!(matches!(out, Outcome::NotApproved(_)));
    }

    #[test]
    fn director_votes_without_quorum() {
        let out = decide(&meeting(&[Y, Y, Y], Some(Y))).expect("valid");
        assert!(matches!(out, Outcome::Approved(t) if !t.quorum));
        // Even the director's vote cannot make four out of two.
        let out = decide(&meeting(&[Y, Y], Some(Y))).expect("valid");
        assert!(matches!(out, Outcome::NotApproved(_)));
    }

    #[test]
    fn refuses_director_vote_when_not_split_and_quorate() {
        let err = decide(&meeting(&[Y, Y, Y, N, A], Some(Y))).expect_err("refused");
        assert!(matches!(err, CommitteeError::DirectorMayNotVote(t) if t.yes == 3 && t.no == 1));
        assert!(err.to_string().contains("3 yes, 1 no"), "{err}");
        // Everyone abstaining is not a split.
        let err = decide(&meeting(&[A, A, A, A], Some(Y))).expect_err("refused");
        assert!(matches!(err, CommitteeError::DirectorMayNotVote(_)));
        assert_eq!(
            decide(&meeting(&[Y, Y, N, N], Some(A))),
            Err(CommitteeError::DirectorAbstained)
        );
    }

    #[test]
    fn refuses_inconsistent_records() {
        assert_eq!(
            decide(&meeting(&[], None)),
            Err(CommitteeError::NobodyPresent)
        );
        assert_eq!(
            decide(&meeting(&[Y; 7], None)),
            Err(CommitteeError::TooManyPresent { present: 7 })
        );

        let mut d = meeting(&[Y, Y, Y, Y], None);
        d.present.push(name(0));
        assert_eq!(decide(&d), Err(CommitteeError::DuplicateMember(name(0))));

        let mut d = meeting(&[Y, Y, Y, Y], None);
        d.votes.push(MemberVote {
            member: name(1),
            vote: N,
        });
        assert_eq!(decide(&d), Err(CommitteeError::DuplicateVote(name(1))));

        let mut d = meeting(&[Y, Y, Y, Y], None);
        d.votes.push(MemberVote {
            member: name(9),
            vote: Y,
        });
        let err = decide(&d).expect_err("refused");
        assert_eq!(err, CommitteeError::VoteFromAbsentMember(name(9)));
        assert!(err.to_string().contains("Member 9"), "{err}");

        let mut d = meeting(&[Y, Y, Y, Y], None);
        d.votes.remove(2);
        assert_eq!(decide(&d), Err(CommitteeError::MissingVote(name(2))));
    }

    #[test]
    fn member_names_are_checked() {
        assert_eq!(MemberName::parse("  Ada  ").expect("ok").as_str(), "Ada");
        for bad in ["", "   ", "a\u{0}b", "line\nbreak"] {
            assert_eq!(
                MemberName::parse(bad),
                Err(CommitteeError::BadMemberName(bad.into()))
            );
        }
        assert!(MemberName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn level_three_approval_needs_an_approving_decision() {
        let yes = decide(&meeting(&[Y, Y, Y, Y], None)).expect("valid");
        let no = decide(&meeting(&[Y, Y, Y, N], None)).expect("valid");
        assert_eq!(check_approval_allowed(Level::III, Some(&yes)), Ok(()));
        assert_eq!(
            check_approval_allowed(Level::III, None),
            Err(CommitteeError::DecisionMissing)
        );
        let err = check_approval_allowed(Level::III, Some(&no)).expect_err("refused");
        assert!(matches!(err, CommitteeError::NotApproved(t) if t.yes == 3));
        for level in [Level::I, Level::II] {
            assert_eq!(check_approval_allowed(level, None), Ok(()));
            assert_eq!(check_approval_allowed(level, Some(&no)), Ok(()));
        }
    }
}
