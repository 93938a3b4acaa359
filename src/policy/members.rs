//! Members whose direct identifiers are withheld from every row of a release, whatever the
//! row says: those who opted out of direct-identifier release (seed 001 section 13), and those
//! who have a protected row (HIV, psychiatric inpatient, substance-use treatment; section 3.1
//! F-H) anywhere in the release's sources. Blanking only the protected rows themselves would
//! leave the member named on their other rows, with the same replacement id, so the protected
//! row could be joined back to the name.
//!
//! A protected member is held as a 64-bit seeded hash (a multiply-and-fold mix under a seed
//! drawn for the release's set) of their normalized SSN or member id, in memory only: 8 bytes
//! a member, and cheap enough to compute several times on every row. It is not a MAC and need
//! not be: nothing leaves memory, and two identities whose hashes collide both lose their
//! direct identifiers, which is the safe direction.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

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
    seed: u64,
    protected: HashSet<MemberKey, BuildHasherDefault<AlreadyMixed>>,
}

/// The hasher of a set of [`MemberKey`]s: a key is already a seeded mix of the identity, so
/// it serves as its own hash (looked up several times on every row, where SipHash showed).
#[derive(Default)]
struct AlreadyMixed(u64);

impl Hasher for AlreadyMixed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `MemberKey` (one `u64`); correct for anything else.
        self.0 = mix(self.0, 0, bytes);
    }

    fn write_u64(&mut self, key: u64) {
        self.0 ^= key;
    }
}

impl From<OptOutSet> for WithheldMembers {
    fn from(optouts: OptOutSet) -> Self {
        WithheldMembers {
            optouts,
            // The standard library's per-process random keys, drawn from the OS.
            seed: RandomState::new().hash_one(0x5354_4557_4152_4455_u64),
            protected: HashSet::default(),
        }
    }
}

/// The high and low halves of a 128-bit product, folded.
fn fold_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    // Truncations keep the low and high 64 bits, as intended.
    (full as u64) ^ ((full >> 64) as u64)
}

/// A seeded 64-bit hash of a short identifier (a domain byte, then its bytes).
fn mix(seed: u64, domain: u8, bytes: &[u8]) -> u64 {
    const K0: u64 = 0x9E37_79B9_7F4A_7C15;
    const K1: u64 = 0x2D35_8DCC_AA6C_78A5;
    let mut h = fold_multiply(seed ^ u64::from(domain), K0 ^ bytes.len() as u64);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = fold_multiply(h ^ u64::from_le_bytes(word), K1);
    }
    fold_multiply(h, K0)
}

impl WithheldMembers {
    /// The key of the member identified by a source value of this kind, or `None` when the
    /// value is not a valid SSN or member id (blank, placeholder) and so identifies no one.
    pub fn member_key(&self, kind: SubjectKey, raw: &[u8]) -> Option<MemberKey> {
        match kind {
            SubjectKey::Ssn => {
                let mut digits = [0u8; 9];
                normalize_ssn(raw, &mut digits).then(|| MemberKey(mix(self.seed, 0, &digits)))
            }
            SubjectKey::MemberId => {
                let mut buf = [0u8; 64];
                let n = normalize_member_id(raw, &mut buf)?;
                Some(MemberKey(mix(self.seed, 1, &buf[..n])))
            }
        }
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
    /// 2 MiB, whatever the release's size. Each key sets four bits of one 64-bit word, so a
    /// row costs one memory access; at a million named identities a false positive (which
    /// only costs a rewrite, and only for an identity learned from a linking row) has odds of
    /// about one in five hundred.
    const WORDS: usize = 1 << 18;

    /// An empty filter.
    pub fn new() -> Self {
        NamedIdentities {
            bits: (0..Self::WORDS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
        }
    }

    /// The word of a key and its four bits in it: the key is already a hash, so its bits
    /// are taken as they are (18 for the word, four times 6 for the bits).
    fn probe(key: MemberKey) -> (usize, u64) {
        let h = key.0;
        // Masked to 18 bits, so below WORDS.
        let word = (h & (Self::WORDS as u64 - 1)) as usize;
        let mask = (0..4).fold(0u64, |mask, i| mask | 1u64 << ((h >> (18 + 6 * i)) & 63));
        (word, mask)
    }

    /// Notes that a row naming this identity was written.
    pub fn insert(&self, key: MemberKey) {
        let (word, mask) = Self::probe(key);
        self.bits[word].fetch_or(mask, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a row naming this identity may have been written.
    pub fn may_contain(&self, key: MemberKey) -> bool {
        let (word, mask) = Self::probe(key);
        self.bits[word].load(std::sync::atomic::Ordering::Relaxed) & mask == mask
    }
}

impl Default for NamedIdentities {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::optout::OptOutHasher;

    #[test]
    fn named_identities_never_forget_and_rarely_invent() {
        let members = WithheldMembers::from(OptOutSet::new(
            OptOutHasher::new(&[3u8; 32]).expect("hasher"),
            [],
        ));
        let key = |i: u32| {
            members
                .member_key(SubjectKey::MemberId, format!("M{i}").as_bytes())
                .expect("valid id")
        };
        let named = NamedIdentities::new();
        for i in 0..100_000 {
            named.insert(key(i));
        }
        assert!((0..100_000).all(|i| named.may_contain(key(i))));
        let false_positives = (100_000..200_000)
            .filter(|i| named.may_contain(key(*i)))
            .count();
        assert!(
            false_positives < 100,
            "{false_positives} false positives in 100000"
        );
        // The same identity written two ways is one key; different ones are not.
        assert_eq!(
            members.member_key(SubjectKey::Ssn, b"123-45-6789"),
            members.member_key(SubjectKey::Ssn, b"123456789")
        );
        assert_ne!(key(1), key(2));
    }
}
