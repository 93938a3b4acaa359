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

    /// The identities withheld as protected members.
    pub fn protected_keys(&self) -> impl Iterator<Item = MemberKey> + '_ {
        self.protected.iter().copied()
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

/// The identities of rows written with their direct identifiers, as a Bloom filter of fixed
/// size (shared by the datasets of one writing of a release). When the files' rows link a
/// protected member to an identity not yet recorded, the identity is recorded at once, so
/// later rows are withheld; only if the filter says an earlier row may have named it must the
/// files be written again. A false positive costs a rewrite, never a disclosure.
#[derive(Debug)]
pub struct NamedIdentities {
    bits: Vec<std::sync::atomic::AtomicU64>,
}

impl NamedIdentities {
    /// Bits: 2^26 (8 MiB), whatever the release's size; at a million named identities a false
    /// positive has odds of about one in a million.
    const WORDS: usize = 1 << 20;
    const PROBES: u32 = 4;

    /// An empty filter.
    pub fn new() -> Self {
        NamedIdentities {
            bits: (0..Self::WORDS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    /// The bit positions of a key: the key is already a keyed hash, so its halves make the
    /// probes (double hashing).
    fn probes(key: MemberKey) -> impl Iterator<Item = (usize, u64)> {
        let (a, b) = (key.0, key.0.rotate_left(32) | 1);
        let bits = (Self::WORDS * 64) as u64;
        (0..Self::PROBES).map(move |i| {
            let bit = a.wrapping_add(u64::from(i).wrapping_mul(b)) % bits;
            // `bit / 64` is below WORDS, which fits usize.
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// Notes that a row naming this identity was written.
    pub fn insert(&self, key: MemberKey) {
        for (word, mask) in Self::probes(key) {
            self.bits[word].fetch_or(mask, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a row naming this identity may have been written.
    pub fn may_contain(&self, key: MemberKey) -> bool {
        Self::probes(key).all(|(word, mask)| {
            self.bits[word].load(std::sync::atomic::Ordering::Relaxed) & mask != 0
        })
    }
}

impl Default for NamedIdentities {
    fn default() -> Self {
        Self::new()
    }
}
