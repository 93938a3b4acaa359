//! Replacement ids: keyed HMAC-SHA-256 under the agency linkage secret, specialised per
//! recipient organization, so ids are stable for one organization across its releases
//! (longitudinal work) and unrelated across organizations (a leaked file points to its
//! recipient).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of the hex text of a replacement id (128 bits of the HMAC tag).
pub const REPLACEMENT_ID_LEN: usize = 32;

/// Shortest agency linkage secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Errors raised while deriving a linkage key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkageError {
    /// The agency secret is too short to be a key.
    #[error("the linkage secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    /// The organization id is empty.
    #[error("the organization id is empty")]
    EmptyOrganization,
}

/// The linkage key of one recipient organization. Its `Debug` output never shows key material.
#[derive(Clone)]
pub struct LinkageKey {
    mac: HmacSha256,
}

impl fmt::Debug for LinkageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkageKey(..)")
    }
}

impl LinkageKey {
    /// Derives the organization key: `K_org = HMAC(agency_secret, "steward/linkage/v1" 0x00 org)`.
    pub fn derive(agency_secret: &[u8], organization: &str) -> Result<LinkageKey, LinkageError> {
        if agency_secret.len() < MIN_SECRET_LEN {
            return Err(LinkageError::SecretTooShort);
        }
        if organization.is_empty() {
            return Err(LinkageError::EmptyOrganization);
        }
        let mut outer = keyed(agency_secret);
        outer.update(b"steward/linkage/v1\0");
        outer.update(organization.as_bytes());
        let org_key = outer.finalize().into_bytes();
        Ok(LinkageKey {
            mac: keyed(&org_key),
        })
    }

    /// Writes the replacement id of `value` in `domain` into `out` as 32 lowercase hex digits:
    /// the first 128 bits of `HMAC(K_org, domain 0x00 normalized value)`. 128 bits keeps ids
    /// short while collisions stay negligible for any realistic number of people.
    /// Normalization trims spaces; in the `ssn` domain it also keeps only digits, so
    /// `123-45-6789` and `123456789` agree. Returns `false` (and leaves `out` alone) when the
    /// normalized value is empty: missing stays missing.
    pub fn replacement_id(
        &self,
        domain: &str,
        value: &[u8],
        out: &mut [u8; REPLACEMENT_ID_LEN],
    ) -> bool {
        if !Self::has_replacement_id(domain, value) {
            return false;
        }
        let value = value.trim_ascii();
        let mut mac = self.mac.clone();
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        if domain == "ssn" {
            for chunk in value.split(|b| !b.is_ascii_digit()) {
                mac.update(chunk);
            }
        } else {
            mac.update(value);
        }
        let tag = mac.finalize().into_bytes();
        // Both lengths are fixed (16 bytes in, 32 hex digits out), so this cannot fail.
        hex::encode_to_slice(&tag[..REPLACEMENT_ID_LEN / 2], out).is_ok()
    }

    /// Whether `value` has a replacement id in `domain` (what [`LinkageKey::replacement_id`]
    /// returns), without computing it: its normalized text is not empty.
    pub fn has_replacement_id(domain: &str, value: &[u8]) -> bool {
        let value = value.trim_ascii();
        if domain == "ssn" {
            value.iter().any(u8::is_ascii_digit)
        } else {
            !value.is_empty()
        }
    }
}

/// The replacement ids of a plan's columns: the organization's key, one slot per replacement
/// column naming its domain, and the id each slot computed last, so that a value seen again (a
/// claim's lines in a row, or a member who is their own subscriber) costs a comparison instead
/// of an HMAC. A remembered id is the id of the same domain and the same raw bytes, so it is
/// the id the key would compute.
#[derive(Clone)]
pub struct ReplacementIds {
    key: LinkageKey,
    slots: Vec<RecentId>,
}

#[derive(Clone)]
struct RecentId {
    domain: String,
    value: Vec<u8>,
    id: Option<[u8; REPLACEMENT_ID_LEN]>,
}

/// The slots' domains only: the remembered values are source identifiers.
impl fmt::Debug for ReplacementIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplacementIds")
            .field("key", &self.key)
            .field(
                "domains",
                &self.slots.iter().map(|s| &s.domain).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ReplacementIds {
    /// Values longer than this are not remembered (ids and SSNs are far shorter).
    const MAX_VALUE: usize = 64;

    /// Ids under `key`, with no slot yet.
    pub fn new(key: LinkageKey) -> Self {
        Self {
            key,
            slots: Vec::new(),
        }
    }

    /// Adds a slot for a column whose ids are in `domain`; returns its index.
    pub fn add_slot(&mut self, domain: &str) -> usize {
        self.slots.push(RecentId {
            domain: domain.to_owned(),
            value: Vec::with_capacity(Self::MAX_VALUE),
            id: None,
        });
        self.slots.len() - 1
    }

    /// Whether [`ReplacementIds::id`] gives an id for `value` in the domain of `slot`.
    pub fn has_id(&self, slot: usize, value: &[u8]) -> bool {
        LinkageKey::has_replacement_id(&self.slots[slot].domain, value)
    }

    /// [`LinkageKey::replacement_id`] of `value` in the domain of `slot`, taken from any slot of
    /// that domain that holds the same value, or computed and remembered in `slot`.
    pub fn id(&mut self, slot: usize, value: &[u8]) -> Option<[u8; REPLACEMENT_ID_LEN]> {
        let domain = self.slots[slot].domain.as_str();
        let remembered = self
            .slots
            .iter()
            .find(|s| s.value == value && s.domain == domain && !s.value.is_empty());
        if let Some(recent) = remembered {
            return recent.id;
        }
        let mut id = [0u8; REPLACEMENT_ID_LEN];
        let id = self
            .key
            .replacement_id(domain, value, &mut id)
            .then_some(id);
        let recent = &mut self.slots[slot];
        recent.value.clear();
        if value.len() <= Self::MAX_VALUE {
            recent.value.extend_from_slice(value);
            recent.id = id;
        }
        id
    }
}

/// A keyed HMAC-SHA-256 state. Written out per RFC 2104 (keys longer than the 64-byte block are
/// hashed, shorter ones zero-padded) so that construction is infallible without a panic path.
pub(crate) fn keyed(key: &[u8]) -> HmacSha256 {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&<Sha256 as sha2::Digest>::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as hmac::digest::KeyInit>::new(&block.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn rid(key: &LinkageKey, domain: &str, v: &str) -> Option<String> {
        let mut out = [0u8; REPLACEMENT_ID_LEN];
        key.replacement_id(domain, v.as_bytes(), &mut out)
            .then(|| String::from_utf8(out.to_vec()).expect("hex"))
    }

    #[test]
    fn remembered_ids_are_the_computed_ones() {
        let key = LinkageKey::derive(SECRET, "org-a").expect("key");
        let mut recent = ReplacementIds::new(key.clone());
        let member = recent.add_slot("ssn");
        let subscriber = recent.add_slot("ssn");
        let claim = recent.add_slot("claim_id");
        let id = |recent: &mut ReplacementIds, slot, value: &str| {
            let has_id = recent.has_id(slot, value.as_bytes());
            let id = recent.id(slot, value.as_bytes());
            assert_eq!(has_id, id.is_some(), "has_id agrees with id on {value:?}");
            id.map(|id| String::from_utf8(id.to_vec()).expect("hex"))
        };
        // Rows of (member SSN, subscriber SSN, claim id), with repeats within and across rows,
        // a value shared by two domains, and values that give no id.
        let rows = [
            ["123-45-6789", "123-45-6789", "K1"],
            ["123-45-6789", "987-65-4321", "K1"],
            ["987-65-4321", "987-65-4321", "123456789"],
            ["no digits", "no digits", "123456789"],
            ["123456789", "123-45-6789", " "],
        ];
        for row in rows {
            for (slot, value) in [member, subscriber, claim].into_iter().zip(row) {
                let domain = if slot == claim { "claim_id" } else { "ssn" };
                assert_eq!(
                    id(&mut recent, slot, value),
                    rid(&key, domain, value),
                    "{value}"
                );
            }
        }
    }

    proptest::proptest! {
        /// Whether a value has an id is decided without the key, exactly as computing it does.
        #[test]
        fn has_replacement_id_agrees_with_computing_it(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
            ssn in proptest::prelude::any::<bool>(),
        ) {
            let key = LinkageKey::derive(SECRET, "org-a").expect("key");
            let domain = if ssn { "ssn" } else { "member_id" };
            let mut out = [0u8; REPLACEMENT_ID_LEN];
            proptest::prop_assert_eq!(
                LinkageKey::has_replacement_id(domain, &value),
                key.replacement_id(domain, &value, &mut out)
            );
        }
    }

    #[test]
    fn stable_within_and_different_across_organizations() {
        let a = LinkageKey::derive(SECRET, "org-a").expect("key");
        let a2 = LinkageKey::derive(SECRET, "org-a").expect("key");
        let b = LinkageKey::derive(SECRET, "org-b").expect("key");
        assert_eq!(rid(&a, "member_id", "M1"), rid(&a2, "member_id", "M1"));
        assert_ne!(rid(&a, "member_id", "M1"), rid(&b, "member_id", "M1"));
        assert_ne!(rid(&a, "member_id", "M1"), rid(&a, "claim_id", "M1"));
        assert_eq!(rid(&a, "ssn", "123-45-6789"), rid(&a, "ssn", "123456789"));
        assert_eq!(rid(&a, "member_id", " "), None);
        assert_eq!(rid(&a, "member_id", "M1").map(|s| s.len()), Some(32));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            LinkageKey::derive(b"short", "org").err(),
            Some(LinkageError::SecretTooShort)
        );
        assert_eq!(
            format!("{:?}", LinkageKey::derive(SECRET, "o").expect("key")),
            "LinkageKey(..)"
        );
    }
}
