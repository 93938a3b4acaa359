//! Members whose direct identifiers are withheld from every row of a release, whatever the
//! row says: those who opted out of direct-identifier release (seed 001 section 13), and those
//! who have a protected row (HIV, psychiatric inpatient, substance-use treatment; section 3.1
//! F-H) anywhere in the release's sources. Blanking only the protected rows themselves would
//! leave the member named on their other rows, with the same replacement id, so the protected
//! row could be joined back to the name.
//!
//! A protected member is held as a 64-bit keyed hash (SipHash under a key drawn for this
//! process) of their normalized SSN or member id, in memory only: 8 bytes a member, and cheap
//! enough to compute on every row. Two members whose hashes collide both lose their direct
//! identifiers, which is the safe direction.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};

use crate::policy::catalog::SubjectKey;
use crate::policy::optout::{normalize_member_id, normalize_ssn, OptOutSet};

/// Why a member's direct identifiers are withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// The member opted out (section 13).
    OptedOut,
    /// The member has a protected row somewhere in the release (section 3.1 F-H).
    ProtectedMember,
}

/// A member identity (SSN or member id) as a keyed in-memory hash; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey(u64);

/// The members of one release whose direct identifiers are withheld.
#[derive(Debug, Clone)]
pub struct WithheldMembers {
    optouts: OptOutSet,
    key: RandomState,
    protected: HashSet<MemberKey>,
}

impl From<OptOutSet> for WithheldMembers {
    fn from(optouts: OptOutSet) -> Self {
        WithheldMembers {
            optouts,
            key: RandomState::new(),
            protected: HashSet::new(),
        }
    }
}

impl WithheldMembers {
    /// The key of the member identified by a source value of this kind, or `None` when the
    /// value is not a valid SSN or member id (blank, placeholder) and so identifies no one.
    pub fn member_key(&self, kind: SubjectKey, raw: &[u8]) -> Option<MemberKey> {
        let mut hasher = self.key.build_hasher();
        match kind {
            SubjectKey::Ssn => {
                let mut digits = [0u8; 9];
                if !normalize_ssn(raw, &mut digits) {
                    return None;
                }
                hasher.write_u8(0);
                hasher.write(&digits);
            }
            SubjectKey::MemberId => {
                let mut buf = [0u8; 64];
                let n = normalize_member_id(raw, &mut buf)?;
                hasher.write_u8(1);
                hasher.write(&buf[..n]);
            }
        }
        Some(MemberKey(hasher.finish()))
    }

    /// Adds a member found on a protected row (or linked to one); `false` when already known.
    pub fn add_protected(&mut self, key: MemberKey) -> bool {
        self.protected.insert(key)
    }

    /// Whether the member is withheld as a protected member.
    pub fn is_protected(&self, key: MemberKey) -> bool {
        self.protected.contains(&key)
    }

    /// Number of member identities withheld as protected members.
    pub fn protected_len(&self) -> usize {
        self.protected.len()
    }

    /// Why the person identified by this source value is withheld, if they are.
    pub fn withheld(&self, kind: SubjectKey, raw: &[u8]) -> Option<Withheld> {
        if self.optouts.is_opted_out(kind, raw) {
            return Some(Withheld::OptedOut);
        }
        if self.protected.is_empty() {
            return None;
        }
        self.member_key(kind, raw)
            .filter(|key| self.protected.contains(key))
            .map(|_| Withheld::ProtectedMember)
    }
}
