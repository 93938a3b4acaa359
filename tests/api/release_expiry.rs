//! Expiry: `expire_due(now)` with the manual clock moves releases past their DUA expiry to
//! `expired` (the destruction demand on expiry is in `destruction.rs`). No sleeping.

use steward::clock::Clock;
use steward::domain::release::{ReleaseId, ReleaseStatus};
use steward::release::Caller;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;
use crate::release_support::{executed_level_one, people};

on_both_databases!(expiry_moves_releases_past_their_dua_to_expired,);

async fn expiry_moves_releases_past_their_dua_to_expired(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0101").await;
    let releases = &app.state.releases;

    // The DUA runs until 2026-12-31 inclusive.
    assert!(releases
        .expire_due(app.clock.now())
        .await
        .unwrap()
        .is_empty());
    app.clock.set(time::macros::datetime!(2026-12-31 23:59 UTC));
    assert!(releases
        .expire_due(app.clock.now())
        .await
        .unwrap()
        .is_empty());
    app.clock.set(time::macros::datetime!(2027-01-01 00:01 UTC));
    let done = releases.expire_due(app.clock.now()).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id.to_string(), id);
    assert_eq!(done[0].status, ReleaseStatus::Expired);
    // Sessions expired with the clock jump: read through the service.
    let record = releases
        .record(id.parse::<ReleaseId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.row.status, ReleaseStatus::Expired);
    // Nothing left to do; running again changes nothing.
    assert!(releases
        .expire_due(app.clock.now())
        .await
        .unwrap()
        .is_empty());

    let history = releases.history(record.row.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.kind, "expire");
    assert_eq!(last.actor, "system");
    let events = app.events_after(0).await;
    let event = events
        .iter()
        .find(|e| e.target() == format!("release:{id}#{}", last.entry))
        .expect("expiry is logged");
    assert_eq!(event.actor(), "system");
    assert_eq!(event.reason.as_deref(), Some("expire"));

    // A person cannot expire a release; expiry is the server's.
    let refused = releases
        .transition(
            Caller::System,
            record.row.id,
            steward::domain::release::Transition::Submit,
            None,
            &Default::default(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(steward::release::ServiceError::Forbidden(_))
    ));
}
