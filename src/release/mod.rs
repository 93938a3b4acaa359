//! Releases: the service every interface calls to file a request, move a release through its
//! lifecycle, record the subcommittee's decision and the DUA, and issue the signed approval
//! letter; the scheduled expiry. The lifecycle, request and DUA rules themselves are pure types
//! in `crate::domain`.

pub mod letter;
pub mod service;
pub mod stored;

pub use service::{
    action_for, nobody_facts, Caller, Expired, ListFilter, PreparedTransition, ReleaseRecord,
    ReleaseService, ServiceError,
};
