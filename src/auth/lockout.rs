//! Lockout with back-off: after too many failures an account or address is locked, each
//! further lockout twice as long as the last, up to a ceiling.

use time::{Duration, OffsetDateTime};

use crate::config::AuthSettings;

/// How long the next lockout lasts, given how many came before it.
pub fn lockout_duration(settings: &AuthSettings, previous_lockouts: i64) -> Duration {
    let doublings = u32::try_from(previous_lockouts.clamp(0, 30)).unwrap_or(30);
    let secs = settings
        .lockout_secs
        .saturating_mul(1u64 << doublings)
        .min(settings.lockout_max_secs);
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Whether a lock is still in force at `now`.
pub fn is_locked(locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    locked_until.is_some_and(|until| until > now)
}

/// Seconds until the lock ends (at least 1 while locked).
pub fn retry_after(locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> u64 {
    locked_until
        .map(|until| (until - now).whole_seconds().max(1))
        .map_or(0, |s| u64::try_from(s).unwrap_or(1))
}
