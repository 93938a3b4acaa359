//! The terms of an executed Data Use Agreement that Steward enforces (seed 001 section 4.3 K:
//! "The MHDO DUA will specify the term of use, and identify the individual responsible for
//! ensuring compliance with the DUA and specify the people who will have access to the data";
//! the second 4.3 K: return or destruction of the data). Editing an executed DUA is an
//! amendment: a new version, never a silent change (issue 5).
//!
//! Whether the named users belong to the requesting organization and have a registered key is
//! not decided here (that needs the database): [`Dua::user_ids`] gives the caller every id to
//! check.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::domain::ids::UserId;

/// Most downloads of one file one DUA may allow: resuming does not count (PRODUCT.md,
/// "Downloads"), so a higher number only hides a mistake.
pub const MAX_DOWNLOADS_PER_FILE: u32 = 100;

/// Longest destruction deadline after expiry, in days.
pub const MAX_DESTRUCTION_DAYS: u16 = 365;

/// Errors of this module; each names the value at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DuaError {
    /// The text is not a DUA number.
    #[error("`{0}` is not a DUA number (expected DUA-YYYY-NNNN, e.g. DUA-2025-0042)")]
    BadNumber(String),
    /// The expiry date is not after the effective date.
    #[error("expiry date {expiry} is not after the effective date {effective}")]
    ExpiryNotAfterEffective {
        /// The effective date.
        effective: Date,
        /// The expiry date.
        expiry: Date,
    },
    /// The destruction deadline falls outside the calendar `time` can represent.
    #[error("destruction deadline {days} days after {expiry} is not a representable date")]
    DeadlineOutOfRange {
        /// The expiry date.
        expiry: Date,
        /// The deadline in days.
        days: u16,
    },
    /// The destruction deadline is longer than allowed.
    #[error("destruction deadline of {0} days is longer than {MAX_DESTRUCTION_DAYS} days")]
    DeadlineTooLong(u16),
    /// The DUA names nobody who may access the data.
    #[error("a DUA must name at least one authorized user")]
    NoAuthorizedUsers,
    /// The download limit is zero or too high.
    #[error("download limit {0} is not between 1 and {MAX_DOWNLOADS_PER_FILE}")]
    BadDownloadLimit(u32),
    /// A network restriction was given with no network in it.
    #[error("a network restriction must list at least one network (or be removed)")]
    NoNetworks,
    /// The text is not a CIDR network.
    #[error("`{0}` is not a CIDR network (expected e.g. 192.0.2.0/24 or 2001:db8::/32)")]
    BadCidr(String),
    /// The prefix is longer than the address.
    #[error("`{cidr}`: prefix /{prefix} is longer than the {bits} bits of the address")]
    PrefixTooLong {
        /// The text.
        cidr: String,
        /// The prefix length given.
        prefix: u8,
        /// Address length.
        bits: u8,
    },
    /// The address has bits set beyond the prefix, so the intended network is ambiguous.
    #[error("`{cidr}` has host bits set; the network is {network}")]
    HostBitsSet {
        /// The text.
        cidr: String,
        /// The network with the host bits cleared.
        network: String,
    },
    /// A `/0` network allows every address: that is no restriction at all.
    #[error("`{0}` allows every address; remove the network restriction instead")]
    WholeAddressSpace(String),
    /// The amendment changes nothing.
    #[error("the amendment changes nothing")]
    EmptyAmendment,
    /// An amended field is given its current value.
    #[error("the amendment sets `{0}` to the value it already has")]
    Unchanged(&'static str),
    /// The amendment adds a user who is already authorized.
    #[error("user {0} is already an authorized user")]
    AlreadyAuthorized(UserId),
    /// The amendment removes a user who is not authorized.
    #[error("user {0} is not an authorized user")]
    NotAuthorized(UserId),
    /// The amendment both adds and removes the same user.
    #[error("user {0} is both added and removed")]
    AddedAndRemoved(UserId),
    /// The version number would overflow.
    #[error("the DUA has reached its last version number")]
    TooManyVersions,
    /// A stored version number is not a version (versions start at 1).
    #[error("version {0} is not a DUA version (versions start at 1)")]
    BadVersion(u32),
}

/// A DUA number: `DUA-YYYY-NNNN`, the year of execution and a four-digit sequence (0001-9999).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DuaNumber(String);

impl DuaNumber {
    /// Parses `DUA-YYYY-NNNN` exactly: upper case, four-digit year, four-digit sequence, no
    /// surrounding space. A sequence of `0000` is refused.
    pub fn parse(s: &str) -> Result<DuaNumber, DuaError> {
        let bad = || DuaError::BadNumber(s.to_owned());
        let rest = s.strip_prefix("DUA-").ok_or_else(bad)?;
        let (year, seq) = rest.split_once('-').ok_or_else(bad)?;
        let digits = |p: &str| p.len() == 4 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(year) || !digits(seq) || seq == "0000" || year.starts_with('0') {
            return Err(bad());
        }
        Ok(DuaNumber(s.to_owned()))
    }

    /// Makes the number for `year` and `sequence`, as the server assigns them.
    pub fn new(year: u16, sequence: u16) -> Result<DuaNumber, DuaError> {
        DuaNumber::parse(&format!("DUA-{year:04}-{sequence:04}"))
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DuaNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DuaNumber {
    type Err = DuaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DuaNumber::parse(s)
    }
}

impl TryFrom<String> for DuaNumber {
    type Error = DuaError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        DuaNumber::parse(&s)
    }
}

impl From<DuaNumber> for String {
    fn from(n: DuaNumber) -> String {
        n.0
    }
}

/// How many complete downloads of each file one authorized user may make (1 or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DownloadLimit(u32);

impl DownloadLimit {
    /// Accepts 1 to [`MAX_DOWNLOADS_PER_FILE`].
    pub fn new(n: u32) -> Result<DownloadLimit, DuaError> {
        if n == 0 || n > MAX_DOWNLOADS_PER_FILE {
            return Err(DuaError::BadDownloadLimit(n));
        }
        Ok(DownloadLimit(n))
    }

    /// The limit.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// An IPv4 or IPv6 network in CIDR form, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix`, refusing a missing or malformed prefix, a prefix longer than the
    /// address, host bits set (`10.0.0.1/8`: did they mean the host or the network?) and `/0`.
    pub fn parse(s: &str) -> Result<Cidr, DuaError> {
        let bad = || DuaError::BadCidr(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        // Only plain decimal digits, no sign, no leading zero: "/08" or "/+8" are typos.
        if prefix.is_empty()
            || prefix.len() > 3
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(bad());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits: u8 = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > bits {
            return Err(DuaError::PrefixTooLong {
                cidr: s.to_owned(),
                prefix,
                bits,
            });
        }
        if prefix == 0 {
            return Err(DuaError::WholeAddressSpace(s.to_owned()));
        }
        let masked = mask(network, prefix);
        if masked != network {
            return Err(DuaError::HostBitsSet {
                cidr: s.to_owned(),
                network: Cidr {
                    network: masked,
                    prefix,
                }
                .to_string(),
            });
        }
        Ok(Cidr { network, prefix })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, as a
    /// dual-stack socket reports IPv4 clients) is compared as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

/// `ip` with every bit after the first `prefix` cleared (`prefix` at most the address length).
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = DuaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

/// Where downloads may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networks {
    /// Any address (the DUA sets no network restriction).
    Any,
    /// Only these networks; never empty (an empty list is refused rather than read as "any").
    Only(BTreeSet<Cidr>),
}

impl Networks {
    /// A restriction to `networks`, refusing an empty list.
    pub fn only(networks: impl IntoIterator<Item = Cidr>) -> Result<Networks, DuaError> {
        let set: BTreeSet<Cidr> = networks.into_iter().collect();
        if set.is_empty() {
            return Err(DuaError::NoNetworks);
        }
        Ok(Networks::Only(set))
    }

    /// Whether a download from `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match self {
            Networks::Any => true,
            Networks::Only(set) => set.iter().any(|n| n.contains(ip)),
        }
    }
}

/// The terms as entered when the DUA is executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuaTerms {
    /// The DUA number.
    pub number: DuaNumber,
    /// First day the DUA is in force.
    pub effective: Date,
    /// Last day the DUA is in force; must be after `effective`.
    pub expiry: Date,
    /// Users who may access the data (seed 001 section 4.3 K); at least one.
    pub authorized_users: BTreeSet<UserId>,
    /// The individual responsible for compliance (section 4.3 K).
    pub responsible: UserId,
    /// Complete downloads allowed per file and user.
    pub download_limit: DownloadLimit,
    /// Networks downloads may come from.
    pub networks: Networks,
    /// Days after expiry by which the data must be destroyed (second section 4.3 K).
    pub destruction_days: u16,
}

/// An executed DUA at one version; only [`Dua::execute`] and [`Dua::amend`] make one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dua {
    terms: DuaTerms,
    version: u32,
}

/// Changes made by an amendment; `None` or empty leaves a term as it is. The number and the
/// effective date are not amendable: a different agreement is a new DUA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amendment {
    /// New expiry date (extension or shortening of the term).
    pub expiry: Option<Date>,
    /// Users to add.
    pub add_users: BTreeSet<UserId>,
    /// Users to remove.
    pub remove_users: BTreeSet<UserId>,
    /// New responsible person.
    pub responsible: Option<UserId>,
    /// New download limit.
    pub download_limit: Option<DownloadLimit>,
    /// New network restriction.
    pub networks: Option<Networks>,
    /// New destruction deadline in days after expiry.
    pub destruction_days: Option<u16>,
}

fn check_terms(terms: &DuaTerms) -> Result<(), DuaError> {
    if terms.expiry <= terms.effective {
        return Err(DuaError::ExpiryNotAfterEffective {
            effective: terms.effective,
            expiry: terms.expiry,
        });
    }
    if terms.destruction_days > MAX_DESTRUCTION_DAYS {
        return Err(DuaError::DeadlineTooLong(terms.destruction_days));
    }
    terms
        .expiry
        .checked_add(Duration::days(i64::from(terms.destruction_days)))
        .ok_or(DuaError::DeadlineOutOfRange {
            expiry: terms.expiry,
            days: terms.destruction_days,
        })?;
    if terms.authorized_users.is_empty() {
        return Err(DuaError::NoAuthorizedUsers);
    }
    if let Networks::Only(set) = &terms.networks {
        if set.is_empty() {
            return Err(DuaError::NoNetworks);
        }
    }
    Ok(())
}

impl Dua {
    /// Records the executed DUA as version 1, refusing terms that make no sense.
    pub fn execute(terms: DuaTerms) -> Result<Dua, DuaError> {
        check_terms(&terms)?;
        Ok(Dua { terms, version: 1 })
    }

    /// Rebuilds a stored version (from the database) with the same checks as execution.
    pub fn restore(terms: DuaTerms, version: u32) -> Result<Dua, DuaError> {
        check_terms(&terms)?;
        if version == 0 {
            return Err(DuaError::BadVersion(version));
        }
        Ok(Dua { terms, version })
    }

    /// The terms of this version.
    pub fn terms(&self) -> &DuaTerms {
        &self.terms
    }

    /// The version: 1 when executed, one more per amendment.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The DUA number.
    pub fn number(&self) -> &DuaNumber {
        &self.terms.number
    }

    /// Every user id the DUA names (authorized users and the responsible person), for the caller
    /// to check against the requesting organization and registered keys.
    pub fn user_ids(&self) -> BTreeSet<UserId> {
        let mut ids = self.terms.authorized_users.clone();
        ids.insert(self.terms.responsible);
        ids
    }

    /// Whether the DUA is in force on `day` (effective through expiry, both inclusive).
    pub fn in_force_on(&self, day: Date) -> bool {
        self.terms.effective <= day && day <= self.terms.expiry
    }

    /// The last day by which the data must be destroyed.
    pub fn destruction_due(&self) -> Date {
        // `check_terms` proved this addition fits; `expiry` is only a fallback for the type.
        self.terms
            .expiry
            .checked_add(Duration::days(i64::from(self.terms.destruction_days)))
            .unwrap_or(self.terms.expiry)
    }

    /// The next version with `changes` applied, refusing an amendment that changes nothing,
    /// sets a term to its current value, or leaves terms that make no sense.
    pub fn amend(&self, changes: &Amendment) -> Result<Dua, DuaError> {
        if changes == &Amendment::default() {
            return Err(DuaError::EmptyAmendment);
        }
        let mut terms = self.terms.clone();
        if let Some(expiry) = changes.expiry {
            if expiry == terms.expiry {
                return Err(DuaError::Unchanged("expiry"));
            }
            terms.expiry = expiry;
        }
        if let Some(both) = changes.add_users.intersection(&changes.remove_users).next() {
            return Err(DuaError::AddedAndRemoved(*both));
        }
        for user in &changes.add_users {
            if !terms.authorized_users.insert(*user) {
                return Err(DuaError::AlreadyAuthorized(*user));
            }
        }
        for user in &changes.remove_users {
            if !terms.authorized_users.remove(user) {
                return Err(DuaError::NotAuthorized(*user));
            }
        }
        if let Some(responsible) = changes.responsible {
            if responsible == terms.responsible {
                return Err(DuaError::Unchanged("responsible"));
            }
            terms.responsible = responsible;
        }
        if let Some(limit) = changes.download_limit {
            if limit == terms.download_limit {
                return Err(DuaError::Unchanged("download_limit"));
            }
            terms.download_limit = limit;
        }
        if let Some(networks) = &changes.networks {
            if *networks == terms.networks {
                return Err(DuaError::Unchanged("networks"));
            }
            terms.networks = networks.clone();
        }
        if let Some(days) = changes.destruction_days {
            if days == terms.destruction_days {
                return Err(DuaError::Unchanged("destruction_days"));
            }
            terms.destruction_days = days;
        }
        check_terms(&terms)?;
        let version = self
            .version
            .checked_add(1)
            .ok_or(DuaError::TooManyVersions)?;
        Ok(Dua { terms, version })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use time::macros::date;

    fn user(n: u128) -> UserId {
        UserId(uuid::Uuid::from_u128(n))
    }

    fn terms() -> DuaTerms {
        DuaTerms {
            number: DuaNumber::parse("DUA-2025-0042").expect("number"),
            effective: date!(2025 - 01 - 01),
            expiry: date!(2026 - 12 - 31),
            authorized_users: [user(1), user(2)].into_iter().collect(),
            responsible: user(1),
            download_limit: DownloadLimit::new(3).expect("limit"),
            networks: Networks::Any,
            destruction_days: 30,
        }
    }

    #[test]
    fn dua_numbers() {
        for good in ["DUA-2025-0001", "DUA-1999-9999"] {
            assert_eq!(DuaNumber::parse(good).expect(good).as_str(), good);
        }
        for bad in [
            "",
            "DUA-2025-0000",
            "DUA-2025-42",
            "DUA-2025-00042",
            "dua-2025-0042",
            "DUA-25-0042",
            "DUA-0999-0042",
            " DUA-2025-0042",
            "DUA-2025-0042 ",
            "DUA-2025_0042",
            "DUA-2025-004a",
            "DUA-２０２５-0042",
        ] {
            assert_eq!(
                DuaNumber::parse(bad),
                Err(DuaError::BadNumber(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            DuaNumber::new(2025, 7).expect("ok").as_str(),
            "DUA-2025-0007"
        );
        assert!(DuaNumber::new(2025, 10_000).is_err());
        let json = serde_json::to_string(&DuaNumber::new(2025, 7).expect("ok")).expect("ser");
        assert_eq!(json, "\"DUA-2025-0007\"");
        assert!(serde_json::from_str::<DuaNumber>("\"DUA-1-1\"").is_err());
    }

    #[test]
    fn cidrs_parse() {
        let c = Cidr::parse("192.0.2.0/24").expect("v4");
        assert_eq!(c.prefix(), 24);
        assert_eq!(c.to_string(), "192.0.2.0/24");
        assert!(c.contains(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200))));
        assert!(!c.contains(IpAddr::V4(Ipv4Addr::new(192, 0, 3, 1))));
        assert!(c.contains("::ffff:192.0.2.7".parse().expect("mapped")));
        assert!(!c.contains(IpAddr::V6(Ipv6Addr::LOCALHOST)));

        let c = Cidr::parse("2001:db8::/32").expect("v6");
        assert!(c.contains("2001:db8:ffff::1".parse().expect("ip")));
        assert!(!c.contains("2001:db9::1".parse().expect("ip")));
        assert!(!c.contains(IpAddr::V4(Ipv4Addr::new(32, 1, 13, 184))));

        assert!(Cidr::parse("203.0.113.7/32")
            .expect("host")
            .contains(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))));
        assert!(Cidr::parse("2001:db8::1/128").is_ok());
        assert!(Cidr::parse("10.0.0.0/1").is_err(), "host bits");
        assert!(Cidr::parse("128.0.0.0/1").is_ok());
    }

    #[test]
    fn cidrs_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "010.0.0.0/8",
            "10.0.0.0 /8",
            "fe80::1%eth0/64",
            "example.org/24",
            "10.0.0.0/1000",
        ] {
            assert_eq!(
                Cidr::parse(bad),
                Err(DuaError::BadCidr(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err(DuaError::PrefixTooLong {
                cidr: "10.0.0.0/33".into(),
                prefix: 33,
                bits: 32
            })
        );
        assert!(matches!(
            Cidr::parse("2001:db8::/129"),
            Err(DuaError::PrefixTooLong { bits: 128, .. })
        ));
        let err = Cidr::parse("10.1.2.3/8").expect_err("host bits");
        assert_eq!(
            err,
            DuaError::HostBitsSet {
                cidr: "10.1.2.3/8".into(),
                network: "10.0.0.0/8".into()
            }
        );
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        assert!(matches!(
            Cidr::parse("2001:db8::1/64"),
            Err(DuaError::HostBitsSet { network, .. }) if network == "2001:db8::/64"
        ));
        assert_eq!(
            Cidr::parse("0.0.0.0/0"),
            Err(DuaError::WholeAddressSpace("0.0.0.0/0".into()))
        );
        assert!(matches!(
            Cidr::parse("::/0"),
            Err(DuaError::WholeAddressSpace(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn a_network_contains_its_addresses(v4: u32, v6: u128, p4 in 1u8..=32, p6 in 1u8..=128) {
            for (ip, prefix) in [(IpAddr::V4(v4.into()), p4), (IpAddr::V6(v6.into()), p6)] {
                let text = format!("{}/{prefix}", mask(ip, prefix));
                let cidr = Cidr::parse(&text).expect("a masked address is a network");
                proptest::prop_assert!(cidr.contains(ip));
                proptest::prop_assert_eq!(cidr.to_string(), text);
                if mask(ip, prefix) != ip {
                    let host_bits = Cidr::parse(&format!("{ip}/{prefix}"));
                    let refused = matches!(host_bits, Err(DuaError::HostBitsSet { .. }));
                    proptest::prop_assert!(refused);
                }
            }
        }
    }

    #[test]
    fn networks_allow() {
        let only = Networks::only([Cidr::parse("192.0.2.0/24").expect("ok")]).expect("non-empty");
        assert!(only.allows("192.0.2.1".parse().expect("ip")));
        assert!(!only.allows("198.51.100.1".parse().expect("ip")));
        assert!(Networks::Any.allows("198.51.100.1".parse().expect("ip")));
        assert_eq!(Networks::only([]), Err(DuaError::NoNetworks));
    }

    #[test]
    fn download_limits() {
        assert_eq!(DownloadLimit::new(0), Err(DuaError::BadDownloadLimit(0)));
        assert_eq!(DownloadLimit::new(1).expect("ok").get(), 1);
        assert!(DownloadLimit::new(MAX_DOWNLOADS_PER_FILE).is_ok());
        assert!(DownloadLimit::new(MAX_DOWNLOADS_PER_FILE + 1).is_err());
    }

    #[test]
    fn execute_checks_terms() {
        let dua = Dua::execute(terms()).expect("valid");
        assert_eq!(dua.version(), 1);
        assert_eq!(dua.destruction_due(), date!(2027 - 01 - 30));
        assert!(dua.in_force_on(date!(2025 - 01 - 01)));
        assert!(dua.in_force_on(date!(2026 - 12 - 31)));
        assert!(!dua.in_force_on(date!(2027 - 01 - 01)));
        assert!(!dua.in_force_on(date!(2024 - 12 - 31)));
        assert_eq!(
            dua.user_ids().into_iter().collect::<Vec<_>>(),
            vec![user(1), user(2)]
        );

        let mut t = terms();
        t.expiry = t.effective;
        assert_eq!(
            Dua::execute(t),
            Err(DuaError::ExpiryNotAfterEffective {
                effective: date!(2025 - 01 - 01),
                expiry: date!(2025 - 01 - 01)
            })
        );
        let mut t = terms();
        t.expiry = date!(2024 - 06 - 30);
        assert!(matches!(
            Dua::execute(t),
            Err(DuaError::ExpiryNotAfterEffective { .. })
        ));
        let mut t = terms();
        t.authorized_users.clear();
        assert_eq!(Dua::execute(t), Err(DuaError::NoAuthorizedUsers));
        let mut t = terms();
        t.networks = Networks::Only(BTreeSet::new());
        assert_eq!(Dua::execute(t), Err(DuaError::NoNetworks));
        let mut t = terms();
        t.destruction_days = MAX_DESTRUCTION_DAYS + 1;
        assert_eq!(Dua::execute(t), Err(DuaError::DeadlineTooLong(366)));
        let mut t = terms();
        t.expiry = Date::MAX;
        assert!(matches!(
            Dua::execute(t),
            Err(DuaError::DeadlineOutOfRange { days: 30, .. })
        ));
        let mut t = terms();
        t.destruction_days = 0;
        assert_eq!(
            Dua::execute(t).expect("zero days").destruction_due(),
            date!(2026 - 12 - 31)
        );
        assert_eq!(Dua::restore(terms(), 0), Err(DuaError::BadVersion(0)));
        assert_eq!(Dua::restore(terms(), 4).expect("ok").version(), 4);
    }

    #[test]
    fn amendments_bump_the_version() {
        let v1 = Dua::execute(terms()).expect("valid");
        let v2 = v1
            .amend(&Amendment {
                expiry: Some(date!(2027 - 06 - 30)),
                add_users: [user(3)].into_iter().collect(),
                remove_users: [user(2)].into_iter().collect(),
                ..Amendment::default()
            })
            .expect("valid amendment");
        assert_eq!(v2.version(), 2);
        assert_eq!(v2.terms().expiry, date!(2027 - 06 - 30));
        assert_eq!(
            v2.terms()
                .authorized_users
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![user(1), user(3)]
        );
        assert_eq!(v2.number(), v1.number());
        assert_eq!(v1.version(), 1, "the old version is untouched");

        let v3 = v2
            .amend(&Amendment {
                networks: Some(
                    Networks::only([Cidr::parse("2001:db8::/32").expect("ok")]).expect("ok"),
                ),
                download_limit: Some(DownloadLimit::new(5).expect("ok")),
                responsible: Some(user(3)),
                destruction_days: Some(60),
                ..Amendment::default()
            })
            .expect("valid amendment");
        assert_eq!(v3.version(), 3);
        assert_eq!(v3.terms().responsible, user(3));
        assert_eq!(v3.destruction_due(), date!(2027 - 08 - 29));
    }

    #[test]
    fn amendments_that_make_no_sense_are_refused() {
        let dua = Dua::execute(terms()).expect("valid");
        let refused = |a: Amendment| dua.amend(&a).expect_err("refused");
        assert_eq!(refused(Amendment::default()), DuaError::EmptyAmendment);
        assert_eq!(
            refused(Amendment {
                expiry: Some(date!(2026 - 12 - 31)),
                ..Amendment::default()
            }),
            DuaError::Unchanged("expiry")
        );
        assert!(matches!(
            refused(Amendment {
                expiry: Some(date!(2024 - 12 - 31)),
                ..Amendment::default()
            }),
            DuaError::ExpiryNotAfterEffective { .. }
        ));
        assert_eq!(
            refused(Amendment {
                add_users: [user(2)].into_iter().collect(),
                ..Amendment::default()
            }),
            DuaError::AlreadyAuthorized(user(2))
        );
        assert_eq!(
            refused(Amendment {
                remove_users: [user(9)].into_iter().collect(),
                ..Amendment::default()
            }),
            DuaError::NotAuthorized(user(9))
        );
        assert_eq!(
            refused(Amendment {
                add_users: [user(4)].into_iter().collect(),
                remove_users: [user(4)].into_iter().collect(),
                ..Amendment::default()
            }),
            DuaError::AddedAndRemoved(user(4))
        );
        assert_eq!(
            refused(Amendment {
                remove_users: [user(1), user(2)].into_iter().collect(),
                ..Amendment::default()
            }),
            DuaError::NoAuthorizedUsers
        );
        assert_eq!(
            refused(Amendment {
                responsible: Some(user(1)),
                ..Amendment::default()
            }),
            DuaError::Unchanged("responsible")
        );
        assert_eq!(
            refused(Amendment {
                download_limit: Some(DownloadLimit::new(3).expect("ok")),
                ..Amendment::default()
            }),
            DuaError::Unchanged("download_limit")
        );
        assert_eq!(
            refused(Amendment {
                networks: Some(Networks::Any),
                ..Amendment::default()
            }),
            DuaError::Unchanged("networks")
        );
        assert_eq!(
            refused(Amendment {
                destruction_days: Some(30),
                ..Amendment::default()
            }),
            DuaError::Unchanged("destruction_days")
        );
        assert_eq!(
            refused(Amendment {
                destruction_days: Some(400),
                ..Amendment::default()
            }),
            DuaError::DeadlineTooLong(400)
        );
        let last = Dua::restore(terms(), u32::MAX).expect("ok");
        assert_eq!(
            last.amend(&Amendment {
                destruction_days: Some(10),
                ..Amendment::default()
            }),
            Err(DuaError::TooManyVersions)
        );
    }
}
