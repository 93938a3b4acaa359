//! The one authorization function on its own: separation of duties and DUA-named recipients.

use steward::auth::{authorize, Action, Credential, Principal, ReleaseFacts, Resource};
use steward::domain::ids::{OrgId, SessionId, UserId};
use steward::domain::role::Role;

fn principal(org: OrgId, roles: &[Role]) -> Principal {
    Principal {
        user_id: UserId::new_random(),
        org_id: org,
        roles: roles.to_vec(),
        held_roles: roles.to_vec(),
        must_change_password: false,
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
        release: None,
        requesting_org: university,
        requested_by: researcher.user_id,
        named_recipients: vec![researcher.user_id],
        responsible: None,
    };
    let resource = Resource::Release(&release);
    let director = principal(agency, &[Role::ExecutiveDirector]);
    assert!(authorize(&director, Action::ApproveRelease, &resource).is_ok());
    // Nobody approves a release they requested or their own organization requested.
    let requester = Principal {
        roles: vec![Role::ExecutiveDirector],
        held_roles: vec![Role::ExecutiveDirector],
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
        release: None,
        requesting_org: university,
        requested_by: named.user_id,
        named_recipients: vec![named.user_id],
        responsible: None,
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

/// Issue 12, finding 1: a token limited to the director's role does not hide the IT role the
/// user also holds.
#[test]
fn separation_of_duties_looks_at_every_role_held_not_the_tokens_subset() {
    let agency = OrgId::new_random();
    let release = ReleaseFacts {
        release: None,
        requesting_org: OrgId::new_random(),
        requested_by: UserId::new_random(),
        named_recipients: Vec::new(),
        responsible: None,
    };
    let resource = Resource::Release(&release);
    let token_of_both = Principal {
        roles: vec![Role::ExecutiveDirector],
        held_roles: vec![Role::ItStaff, Role::ExecutiveDirector],
        ..principal(agency, &[])
    };
    let denied = authorize(&token_of_both, Action::ApproveRelease, &resource).unwrap_err();
    assert_eq!(denied.0.as_str(), "IT staff cannot approve releases");
    // The token's subset still limits what it grants.
    let limited = Principal {
        roles: vec![Role::Recipient],
        held_roles: vec![Role::Recipient, Role::ExecutiveDirector],
        ..principal(agency, &[])
    };
    assert!(authorize(&limited, Action::ApproveRelease, &resource).is_err());
}

/// Issue 12, finding 4: the requesting organization's staff decide nothing about its release.
#[test]
fn separation_of_duties_covers_committee_dua_denial_and_revocation() {
    use steward::domain::release::Transition;
    let university = OrgId::new_random();
    let release = ReleaseFacts {
        release: None,
        requesting_org: university,
        requested_by: UserId::new_random(),
        named_recipients: Vec::new(),
        responsible: None,
    };
    let resource = Resource::Release(&release);
    let own_director = principal(university, &[Role::ExecutiveDirector, Role::PrivacyOfficer]);
    let agency_director = principal(
        OrgId::new_random(),
        &[Role::ExecutiveDirector, Role::PrivacyOfficer],
    );
    for action in [
        Action::ApproveRelease,
        Action::NarrowRelease,
        Action::RecordCommitteeDecision,
        Action::AmendDua,
        Action::TransitionRelease(Transition::StartReview),
        Action::TransitionRelease(Transition::Deny),
        Action::TransitionRelease(Transition::ExecuteDua),
        Action::TransitionRelease(Transition::Revoke),
        Action::TransitionRelease(Transition::DemandDestruction),
    ] {
        assert!(
            authorize(&own_director, action, &resource).is_err(),
            "{action:?} by the requesting organization's director"
        );
        assert!(
            authorize(&agency_director, action, &resource).is_ok(),
            "{action:?} by the agency's director"
        );
    }
}

#[test]
fn nobody_changes_their_own_roles() {
    let admin = principal(OrgId::new_random(), &[Role::Admin]);
    let denied =
        authorize(&admin, Action::SetRoles, &Resource::OwnedBy(admin.user_id)).unwrap_err();
    assert_eq!(denied.0.as_str(), "nobody changes their own roles");
    assert!(authorize(
        &admin,
        Action::SetRoles,
        &Resource::OwnedBy(UserId::new_random())
    )
    .is_ok());
}

/// Issue 12: the decisions a download needs (DUA status, term, named users, networks, quota)
/// are taken by the one authorization function, on facts loaded for the file.
#[test]
fn a_download_is_decided_on_the_duas_terms() {
    use steward::auth::authorize::DownloadFacts;
    use steward::domain::dua::{Cidr, DownloadLimit, DuaNumber, DuaTerms, Networks};
    use steward::domain::release::ReleaseStatus;
    use time::macros::date;
    let university = OrgId::new_random();
    let named = principal(university, &[Role::Recipient]);
    let colleague = principal(university, &[Role::Recipient]);
    let terms = DuaTerms {
        number: DuaNumber::parse("DUA-2026-0001").unwrap(),
        effective: date!(2026 - 03 - 01),
        expiry: date!(2026 - 12 - 31),
        authorized_users: [named.user_id].into_iter().collect(),
        responsible: named.user_id,
        download_limit: DownloadLimit::new(3).unwrap(),
        networks: Networks::only([Cidr::parse("192.0.2.0/24").unwrap()]).unwrap(),
        destruction_days: 30,
    };
    let facts = DownloadFacts {
        release: ReleaseFacts {
            release: None,
            requesting_org: university,
            requested_by: named.user_id,
            named_recipients: vec![named.user_id],
            responsible: None,
        },
        status: ReleaseStatus::Available,
        dua: Some(terms.clone()),
        link_user: Some(named.user_id),
        link_client: None,
        revoked: false,
        file_bytes: 1000,
        // Two whole downloads and half of a third, asking for the other half: within 3.
        used_bytes: 2500,
        requested_bytes: 500,
        client: Some("192.0.2.7".parse().unwrap()),
        today: date!(2026 - 06 - 15),
    };
    let decide = |who: &Principal, facts: &DownloadFacts| {
        authorize(who, Action::DownloadFile, &Resource::Download(facts)).map_err(|d| d.0.as_str())
    };
    assert_eq!(decide(&named, &facts), Ok(()));
    assert!(decide(&colleague, &facts).is_err(), "not named by the DUA");
    let staff = principal(
        OrgId::new_random(),
        &[Role::ExecutiveDirector, Role::PrivacyOfficer],
    );
    assert!(
        decide(&staff, &facts).is_err(),
        "staff read releases, they do not receive data"
    );
    assert_eq!(facts.downloads_left(), 0, "what is left is half a file");
    let cases: [(&str, DownloadFacts); 10] = [
        (
            "the download link was issued to another user",
            DownloadFacts {
                link_user: Some(colleague.user_id),
                ..facts.clone()
            },
        ),
        (
            "the download link is bound to another client address",
            DownloadFacts {
                link_client: Some("192.0.2.8".parse().unwrap()),
                ..facts.clone()
            },
        ),
        (
            "the release's data has been destroyed",
            DownloadFacts {
                status: ReleaseStatus::Destroyed,
                ..facts.clone()
            },
        ),
        (
            "access is revoked",
            DownloadFacts {
                revoked: true,
                ..facts.clone()
            },
        ),
        (
            "the release is not available for download",
            DownloadFacts {
                status: ReleaseStatus::Revoked,
                ..facts.clone()
            },
        ),
        (
            "the release has no DUA in force",
            DownloadFacts {
                dua: None,
                ..facts.clone()
            },
        ),
        (
            "the DUA is not in force yet",
            DownloadFacts {
                today: date!(2026 - 02 - 28),
                ..facts.clone()
            },
        ),
        (
            "the DUA has expired",
            DownloadFacts {
                today: date!(2027 - 01 - 01),
                ..facts.clone()
            },
        ),
        (
            "the client address is outside the DUA's allowed networks",
            DownloadFacts {
                client: Some("198.51.100.1".parse().unwrap()),
                ..facts.clone()
            },
        ),
        (
            "the DUA's download limit for this file is reached",
            DownloadFacts {
                requested_bytes: 501,
                ..facts.clone()
            },
        ),
    ];
    for (reason, case) in cases {
        assert_eq!(decide(&named, &case), Err(reason));
    }
    // The refusal's kind is the authorization function's, so the status is too.
    use steward::auth::authorize::DenialKind;
    let kind = |facts: DownloadFacts| {
        authorize(&named, Action::DownloadFile, &Resource::Download(&facts))
            .unwrap_err()
            .kind()
    };
    let gone = DownloadFacts {
        status: ReleaseStatus::Destroyed,
        ..facts.clone()
    };
    let limit = DownloadFacts {
        used_bytes: 3000,
        requested_bytes: 0,
        ..facts.clone()
    };
    let revoked = DownloadFacts {
        revoked: true,
        ..facts.clone()
    };
    assert_eq!(kind(gone), DenialKind::Gone);
    assert_eq!(kind(limit), DenialKind::LimitReached);
    assert_eq!(kind(revoked), DenialKind::Forbidden);
    // No network restriction: any address, even an unknown one.
    let anywhere = DownloadFacts {
        dua: Some(DuaTerms {
            networks: Networks::Any,
            ..terms
        }),
        client: None,
        ..facts
    };
    assert_eq!(decide(&named, &anywhere), Ok(()));
}
