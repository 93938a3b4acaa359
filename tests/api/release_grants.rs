//! The authorization table agrees with the state machine: a role may perform a transition
//! through `auth::authorize` exactly when `Transition::performers` names it.

use steward::auth::authorize::{ReleaseFacts, GRANTS};
use steward::auth::{authorize, Credential, Principal, Resource};
use steward::domain::ids::{ApiTokenId, OrgId, UserId};
use steward::domain::release::Transition;
use steward::domain::role::Role;
use steward::release::action_for;

#[test]
fn grants_mirror_the_performers_of_every_transition() {
    assert!(!GRANTS.is_empty());
    let facts = ReleaseFacts {
        requesting_org: OrgId(uuid::Uuid::from_u128(1)),
        requested_by: UserId(uuid::Uuid::from_u128(2)),
        named_recipients: Vec::new(),
    };
    for transition in Transition::ALL {
        for role in Role::ALL {
            // A member of the requesting organization (the requester's colleague) for the
            // requester's own transitions; an agency member for everything else.
            let own = transition.allowed_for(Role::Recipient) && role == Role::Recipient;
            let principal = Principal {
                user_id: UserId(uuid::Uuid::from_u128(3)),
                org_id: if own {
                    facts.requesting_org
                } else {
                    OrgId(uuid::Uuid::from_u128(4))
                },
                roles: vec![role],
                held_roles: vec![role],
                must_change_password: false,
                credential: Credential::ApiToken(ApiTokenId(uuid::Uuid::nil())),
            };
            let allowed = authorize(
                &principal,
                action_for(transition),
                &Resource::Release(&facts),
            )
            .is_ok();
            assert_eq!(
                allowed,
                transition.allowed_for(role),
                "{role} {transition}: GRANTS and Transition::performers disagree"
            );
        }
    }
}
