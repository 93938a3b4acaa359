//! The one authorization function on its own: separation of duties and DUA-named recipients.

use steward::auth::{authorize, Action, Credential, Principal, ReleaseFacts, Resource};
use steward::domain::ids::{OrgId, SessionId, UserId};
use steward::domain::role::Role;

fn principal(org: OrgId, roles: &[Role]) -> Principal {
    Principal {
        user_id: UserId::new_random(),
        org_id: org,
        roles: roles.to_vec(),
        credential: Credential::Session {
            session: SessionId::new_random(),
            via_cookie: false,
        },
    }
}

#[test]
fn separation_of_duties() {
    let agency = OrgId::new_random();
    let university = OrgId::new_random();
    let researcher = principal(university, &[Role::Recipient]);
    let release = ReleaseFacts {
        requesting_org: university,
        requested_by: researcher.user_id,
        named_recipients: vec![researcher.user_id],
    };
    let resource = Resource::Release(&release);
    let director = principal(agency, &[Role::ExecutiveDirector]);
    assert!(authorize(&director, Action::ApproveRelease, &resource).is_ok());
    // Nobody approves a release they requested or their own organization requested.
    let requester = Principal {
        roles: vec![Role::ExecutiveDirector],
        ..researcher.clone()
    };
    let denied = authorize(&requester, Action::ApproveRelease, &resource).unwrap_err();
    assert_eq!(
        denied.0.as_str(),
        "nobody approves a release they requested"
    );
    let same_org_director = principal(university, &[Role::ExecutiveDirector]);
    let denied = authorize(&same_org_director, Action::ApproveRelease, &resource).unwrap_err();
    assert_eq!(
        denied.0.as_str(),
        "nobody approves a release their own organization requested"
    );
    // IT staff cannot approve, even holding the director's role too.
    let it = principal(agency, &[Role::ItStaff]);
    assert!(authorize(&it, Action::ApproveRelease, &resource).is_err());
    let both = principal(agency, &[Role::ItStaff, Role::ExecutiveDirector]);
    let denied = authorize(&both, Action::ApproveRelease, &resource).unwrap_err();
    assert_eq!(denied.0.as_str(), "IT staff cannot approve releases");
    // No other role approves.
    for role in [Role::Recipient, Role::PrivacyOfficer, Role::Admin] {
        assert!(authorize(
            &principal(agency, &[role]),
            Action::ApproveRelease,
            &resource
        )
        .is_err());
    }
}

#[test]
fn recipients_reach_only_releases_naming_them() {
    let university = OrgId::new_random();
    let named = principal(university, &[Role::Recipient]);
    let colleague = principal(university, &[Role::Recipient]);
    let release = ReleaseFacts {
        requesting_org: university,
        requested_by: named.user_id,
        named_recipients: vec![named.user_id],
    };
    let resource = Resource::Release(&release);
    assert!(authorize(&named, Action::ReadRelease, &resource).is_ok());
    assert!(authorize(&colleague, Action::ReadRelease, &resource).is_err());
    let officer = principal(OrgId::new_random(), &[Role::PrivacyOfficer]);
    assert!(authorize(&officer, Action::ReadRelease, &resource).is_ok());
}

#[test]
fn own_things_only_and_deny_by_default() {
    let org = OrgId::new_random();
    let alice = principal(org, &[Role::Recipient]);
    let bob = principal(org, &[Role::Recipient]);
    assert!(authorize(
        &alice,
        Action::RevokeApiToken,
        &Resource::OwnedBy(alice.user_id)
    )
    .is_ok());
    assert!(authorize(
        &alice,
        Action::RevokeApiToken,
        &Resource::OwnedBy(bob.user_id)
    )
    .is_err());
    let admin = principal(org, &[Role::Admin]);
    assert!(authorize(
        &admin,
        Action::RevokeApiToken,
        &Resource::OwnedBy(bob.user_id)
    )
    .is_ok());
    // A principal without roles (an API token whose roles were all withdrawn) can do nothing.
    let nobody = principal(org, &[]);
    assert!(authorize(
        &nobody,
        Action::ViewOwnAccount,
        &Resource::OwnedBy(nobody.user_id)
    )
    .is_err());
}
