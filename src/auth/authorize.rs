//! The one authorization function and the one table of which role may do what.
//!
//! Architecture invariant: every handler calls [`authorize`] before touching data, and anything
//! [`GRANTS`] does not grant is denied.

use crate::audit::Reason;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::role::Role;

use super::Principal;

/// Something a principal may try to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See one's own account.
    ViewOwnAccount,
    /// End one's own session.
    EndOwnSession,
    /// Change one's own password.
    ChangeOwnPassword,
    /// List registered recipient keys.
    ListRecipientKeys,
    /// Register a recipient key.
    AddRecipientKey,
    /// Remove a recipient key.
    RemoveRecipientKey,
    /// List API tokens.
    ListApiTokens,
    /// Create an API token.
    CreateApiToken,
    /// Revoke an API token.
    RevokeApiToken,
    /// List organizations.
    ListOrganizations,
    /// Create an organization.
    CreateOrganization,
    /// List users.
    ListUsers,
    /// Create a user.
    CreateUser,
    /// Disable a user.
    DisableUser,
    /// Replace a user's roles.
    SetRoles,
    /// Lift a lockout.
    UnlockUser,
    /// See a release and its files.
    ReadRelease,
    /// Give a release final approval.
    ApproveRelease,
}

/// What an action is applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Something that belongs to the user `owner` (their account, keys, tokens).
    OwnedBy(UserId),
    /// The directory of users and organizations as a whole.
    Directory,
    /// A release, described by the facts separation of duties needs.
    Release(&'a ReleaseFacts),
}

/// The facts about a release that decide who may see or approve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// The organization that requested it.
    pub requesting_org: OrgId,
    /// The user who requested it.
    pub requested_by: UserId,
    /// Users the DUA names as authorized recipients.
    pub named_recipients: Vec<UserId>,
}

/// How far a grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only what the principal owns.
    Own,
    /// Only releases whose DUA names the principal.
    NamedRecipient,
    /// Anything.
    Any,
}

/// An access decision refused, with the reason for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.as_str())]
pub struct Denied(pub Reason);

const EVERY_ROLE: [Role; 5] = Role::ALL;

/// The table: which role may do which action, how far. Nothing else grants anything.
pub const GRANTS: &[(Role, Action, Scope)] = &[
    (Role::Recipient, Action::ListRecipientKeys, Scope::Own),
    (Role::Recipient, Action::AddRecipientKey, Scope::Own),
    (Role::Recipient, Action::RemoveRecipientKey, Scope::Own),
    (Role::Recipient, Action::ReadRelease, Scope::NamedRecipient),
    (Role::ItStaff, Action::ReadRelease, Scope::Any),
    (Role::ExecutiveDirector, Action::ReadRelease, Scope::Any),
    (Role::ExecutiveDirector, Action::ApproveRelease, Scope::Any),
    (Role::PrivacyOfficer, Action::ReadRelease, Scope::Any),
    (Role::Admin, Action::ListApiTokens, Scope::Any),
    (Role::Admin, Action::RevokeApiToken, Scope::Any),
    (Role::Admin, Action::ListOrganizations, Scope::Any),
    (Role::Admin, Action::CreateOrganization, Scope::Any),
    (Role::Admin, Action::ListUsers, Scope::Any),
    (Role::Admin, Action::CreateUser, Scope::Any),
    (Role::Admin, Action::DisableUser, Scope::Any),
    (Role::Admin, Action::SetRoles, Scope::Any),
    (Role::Admin, Action::UnlockUser, Scope::Any),
];

/// What every role may do to what it owns.
pub const EVERY_ROLE_OWN: &[Action] = &[
    Action::ViewOwnAccount,
    Action::EndOwnSession,
    Action::ChangeOwnPassword,
    Action::ListApiTokens,
    Action::CreateApiToken,
    Action::RevokeApiToken,
];

/// Decides whether `principal` may do `action` to `resource`. Deny by default: only a row of
/// [`GRANTS`] (or [`EVERY_ROLE_OWN`]) whose scope covers the resource allows, and the
/// separation-of-duties rules then apply on top.
pub fn authorize(
    principal: &Principal,
    action: Action,
    resource: &Resource<'_>,
) -> Result<(), Denied> {
    let granted = principal.roles.iter().any(|&role| {
        let own = EVERY_ROLE.contains(&role) && EVERY_ROLE_OWN.contains(&action);
        (own && in_scope(principal, Scope::Own, resource))
            || GRANTS
                .iter()
                .filter(|(r, a, _)| *r == role && *a == action)
                .any(|(_, _, scope)| in_scope(principal, *scope, resource))
    });
    if !granted {
        return Err(Denied(Reason::new(
            "no role of the user grants this action",
        )));
    }
    if action == Action::ApproveRelease {
        separation_of_duties(principal, resource)?;
    }
    Ok(())
}

fn in_scope(principal: &Principal, scope: Scope, resource: &Resource<'_>) -> bool {
    match (scope, resource) {
        (Scope::Any, _) => true,
        (Scope::Own, Resource::OwnedBy(owner)) => *owner == principal.user_id,
        (Scope::NamedRecipient, Resource::Release(facts)) => {
            facts.named_recipients.contains(&principal.user_id)
        }
        (Scope::Own | Scope::NamedRecipient, _) => false,
    }
}

fn separation_of_duties(principal: &Principal, resource: &Resource<'_>) -> Result<(), Denied> {
    if principal.roles.contains(&Role::ItStaff) {
        return Err(Denied(Reason::new("IT staff cannot approve releases")));
    }
    let Resource::Release(facts) = resource else {
        return Err(Denied(Reason::new("only releases can be approved")));
    };
    if facts.requested_by == principal.user_id {
        return Err(Denied(Reason::new(
            "nobody approves a release they requested",
        )));
    }
    if facts.requesting_org == principal.org_id {
        return Err(Denied(Reason::new(
            "nobody approves a release their own organization requested",
        )));
    }
    Ok(())
}
