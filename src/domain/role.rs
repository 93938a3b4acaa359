//! The roles a user may hold; a user may hold several.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job a person does in Steward (PRODUCT.md, "Users and their jobs").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Receives releases whose DUA names them.
    Recipient,
    /// Runs extract jobs; never approves.
    ItStaff,
    /// Approves releases and revokes access.
    ExecutiveDirector,
    /// Reviews the access log and tracks DUAs.
    PrivacyOfficer,
    /// Manages accounts, organizations and roles.
    Admin,
}

/// The text was not a role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected recipient, it_staff, executive_director, privacy_officer or admin")]
pub struct ParseRoleError(pub String);

impl Role {
    /// Whether this is a staff role, in force only for people of the agency.
    pub fn is_staff(self) -> bool {
        self != Role::Recipient
    }

    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Recipient,
        Role::ItStaff,
        Role::ExecutiveDirector,
        Role::PrivacyOfficer,
        Role::Admin,
    ];

    /// The stable name used in the database, configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Recipient => "recipient",
            Role::ItStaff => "it_staff",
            Role::ExecutiveDirector => "executive_director",
            Role::PrivacyOfficer => "privacy_officer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| ParseRoleError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("Admin".parse::<Role>().is_err());
    }
}
