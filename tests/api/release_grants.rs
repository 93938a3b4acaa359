//! Who may perform each release transition, as the one authorization table (`GRANTS`) decides
//! it, against the rule written out here from the seeds (PRODUCT.md, "Release lifecycle").

use steward::auth::authorize::{ReleaseFacts, GRANTS};
use steward::auth::{authorize, Credential, Principal, Resource};
use steward::domain::ids::{ApiTokenId, OrgId, UserId};
use steward::domain::release::Transition;
use steward::domain::role::Role;

/// The rule: which roles perform each transition (none for the server's own).
fn performers(transition: Transition) -> &'static [Role] {
    use Role::*;
    use Transition as T;
    match transition {
        T::Submit | T::Withdraw => &[Recipient],
        T::StartReview | T::ExecuteDua => &[ExecutiveDirector, PrivacyOfficer],
        T::Approve | T::Deny | T::Revoke | T::DemandDestruction => &[ExecutiveDirector],
        T::StartExtraction | T::CancelExtraction => &[ItStaff],
        T::ExtractionFinished | T::ExtractionFailed | T::Expire | T::ConfirmDestruction => &[],
    }
}
use steward::release::action_for;

#[test]
fn grants_give_each_transition_to_exactly_its_performers() {
    assert!(!GRANTS.is_empty());
    let facts = ReleaseFacts {
        release: None,
        requesting_org: OrgId(uuid::Uuid::from_u128(1)),
        requested_by: UserId(uuid::Uuid::from_u128(2)),
        named_recipients: Vec::new(),
        responsible: None,
    };
    for transition in Transition::ALL {
        for role in Role::ALL {
            // A member of the requesting organization (the requester's colleague) for the
            // requester's own transitions; an agency member for everything else.
            let own = performers(transition).contains(&Role::Recipient) && role == Role::Recipient;
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
                performers(transition).contains(&role),
                "{role} {transition}"
            );
        }
    }
}
