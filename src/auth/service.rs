//! The `Authenticator`: accounts, logins, sessions, API tokens and recipient keys, each change
//! written to the access log. HTTP handlers and the `steward admin` CLI both go through it.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use time::{Duration, OffsetDateTime};

use super::authorize::{authorize, Action, ReleaseFacts, Resource};
use super::keys::parse_recipient_key;
use super::password::{generate_password, PasswordHasher};
use super::tokens::{self, Claims, TokenKind, API_TOKEN_PREFIX};
use super::{lockout, totp, AuthError, Credential, Principal};
use crate::audit::{
    AccessEvent, Action as Logged, Actor, AuditLog, Client, Outcome, Reason, Target,
};
use crate::clock::SharedClock;
use crate::config::AuthSettings;
use crate::crypto::master::MasterIdentity;
use crate::crypto::JwtKeyring;
use crate::db::api_tokens::{self, ApiTokenRow};
use crate::db::login_throttle;
use crate::db::recipient_keys::{self, RecipientKeyRow};
use crate::db::sessions::{self, RefreshUse, SessionRow};
use crate::db::users::{self, NewUser, OrgRow, UserRow};
use crate::db::{Database, DbError};
use crate::domain::ids::{ApiTokenId, OrgId, RecipientKeyId, SessionId, UserId};
use crate::domain::role::Role;

/// Identity and access, wired to the database, the access log, the clock and the keyring.
#[derive(Debug, Clone)]
pub struct Authenticator {
    db: Database,
    audit: AuditLog,
    clock: SharedClock,
    settings: Arc<AuthSettings>,
    keyring: JwtKeyring,
    hasher: PasswordHasher,
    refusals: Arc<std::sync::Mutex<RefusalWindows>>,
    /// Wraps TOTP seeds, so the database holds none in clear.
    master: Arc<MasterIdentity>,
}

/// Refusals of requests without valid credentials, per client address, in one-minute windows:
/// the first few of a window are logged one by one, the rest refused unjudged (429) and logged
/// as one event with their count when the window closes, so a flood of bad requests adds a
/// handful of rows, not one each.
#[derive(Debug, Default)]
struct RefusalWindows {
    by_address: std::collections::HashMap<std::net::IpAddr, RefusalWindow>,
}

#[derive(Debug, Clone, Copy)]
struct RefusalWindow {
    started: OffsetDateTime,
    refused: u64,
}

/// The window.
const REFUSAL_WINDOW: Duration = Duration::seconds(60);
/// Addresses tracked at once; beyond, closed windows are flushed first, then the oldest.
const REFUSAL_ADDRESSES: usize = 10_000;

/// A login attempt. Secrets stay wrapped so `Debug` cannot print them.
#[derive(Debug)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: SecretString,
    /// Current TOTP code.
    pub totp: Option<SecretString>,
    /// A one-time recovery code, instead of a TOTP code.
    pub recovery_code: Option<SecretString>,
}

/// The tokens of a session, to hand to the client once.
#[derive(Debug)]
pub struct IssuedSession {
    /// The user.
    pub user_id: UserId,
    /// The session.
    pub session_id: SessionId,
    /// Short-lived EdDSA JWT.
    pub access_token: SecretString,
    /// Single-use refresh token.
    pub refresh_token: SecretString,
    /// The browser session's CSRF token (only at login; it lasts the session).
    pub csrf_token: Option<SecretString>,
    /// Seconds until the access token expires.
    pub access_expires_in: u64,
    /// Seconds until the session (and its refresh tokens) ends.
    pub session_expires_in: u64,
}

/// A new account's one-time secrets, to show once.
#[derive(Debug)]
pub struct NewAccount {
    /// The user.
    pub user_id: UserId,
    /// Login name.
    pub username: String,
    /// One-time password.
    pub password: SecretString,
    /// `otpauth://` URI for an authenticator app.
    pub totp_uri: SecretString,
    /// One-time recovery codes.
    pub recovery_codes: Vec<SecretString>,
}

/// The credential a request presented, if any.
#[derive(Debug)]
pub enum PresentedCredential {
    /// `Authorization: Bearer ...`: an access token or an API token.
    Bearer(SecretString),
    /// The session cookie: an access token.
    Cookie(SecretString),
    /// Nothing.
    None,
}

const NOT_FOUND_USER: &str = "user";

impl Authenticator {
    /// Wires the authenticator; computes the dummy password hash.
    pub async fn new(
        db: Database,
        audit: AuditLog,
        clock: SharedClock,
        settings: &AuthSettings,
        keyring: JwtKeyring,
        master: Arc<MasterIdentity>,
    ) -> Result<Self, AuthError> {
        let hasher = PasswordHasher::new(settings).await?;
        Ok(Self {
            db,
            audit,
            clock,
            settings: Arc::new(settings.clone()),
            keyring,
            hasher,
            refusals: Arc::default(),
            master,
        })
    }

    /// The JWT keyring.
    pub fn keyring(&self) -> &JwtKeyring {
        &self.keyring
    }

    /// The auth settings in force.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// For events that accompany no change (refusals, reads).
    async fn log(&self, event: AccessEvent) -> Result<(), AuthError> {
        self.audit.append(&event).await?;
        Ok(())
    }

    /// Begins the transaction of a change.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, AuthError> {
        Ok(self.db.begin_write().await.map_err(DbError::from)?)
    }

    /// Records the change's event in its transaction and commits both.
    async fn commit(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        event: AccessEvent,
    ) -> Result<(), AuthError> {
        self.audit.record(&mut tx, &event).await?;
        tx.commit().await.map_err(DbError::from)?;
        Ok(())
    }

    /// Decides with [`authorize`] and logs a denial before returning it.
    pub async fn check(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource<'_>,
        route: &'static str,
        client: &Client,
    ) -> Result<(), AuthError> {
        match authorize(principal, action, resource) {
            Ok(()) => Ok(()),
            Err(denied) => {
                // Against what was refused: the release or the account when known, else the
                // route.
                let target = match resource {
                    Resource::Release(ReleaseFacts {
                        release: Some(id), ..
                    }) => Target::Release { id: *id, entry: 0 },
                    Resource::OwnedBy(owner) => Target::User(owner.0),
                    _ => Target::Route(route),
                };
                let event = AccessEvent::new(
                    Actor::User(principal.user_id.0),
                    Logged::Authorization,
                    target,
                    Outcome::Denied,
                )
                .with_reason(denied.0)
                .with_client(client);
                self.log(event).await?;
                Err(AuthError::Forbidden(denied))
            }
        }
    }

    // ----- organizations and users -----

    /// Creates an organization; `agency` marks it as the agency, whose people alone hold staff
    /// roles in force (only the shell and bootstrap mark one).
    pub async fn create_org(&self, by: &By, name: &str, agency: bool) -> Result<OrgRow, AuthError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(AuthError::Invalid(
                "an organization name must have 1 to 200 characters".into(),
            ));
        }
        check_shown_text("an organization name", name)?;
        if users::find_org(&self.db, name).await?.is_some() {
            return Err(AuthError::Conflict(format!(
                "organization `{name}` exists already"
            )));
        }
        let org = OrgRow {
            id: OrgId::new_random(),
            name: name.to_owned(),
            agency,
            created_at: self.clock.now(),
        };
        let mut tx = self.begin().await?;
        users::insert_org(&mut tx, &org).await?;
        self.commit(
            tx,
            AccessEvent::new(
                by.actor,
                Logged::OrganizationCreated,
                Target::Organization(org.id.0),
                Outcome::Succeeded,
            )
            .with_client(&by.client),
        )
        .await?;
        Ok(org)
    }

    /// Every organization.
    pub async fn list_orgs(&self) -> Result<Vec<OrgRow>, AuthError> {
        Ok(users::list_orgs(&self.db).await?)
    }

    /// Creates a user with a one-time password, a TOTP secret and recovery codes.
    pub async fn create_user(
        &self,
        by: &By,
        username: &str,
        display_name: &str,
        org: &str,
        roles: &[Role],
    ) -> Result<NewAccount, AuthError> {
        let username = username.trim();
        if !is_valid_username(username) {
            return Err(AuthError::Invalid(
                "a user name must have 1 to 64 characters among letters, digits and . _ - @".into(),
            ));
        }
        if roles.is_empty() {
            return Err(AuthError::Invalid("a user needs at least one role".into()));
        }
        let org = users::find_org(&self.db, org.trim())
            .await?
            .ok_or(AuthError::NotFound("organization"))?;
        if users::find_by_username(&self.db, username).await?.is_some() {
            return Err(AuthError::Conflict(format!(
                "user name `{username}` is taken"
            )));
        }
        let password = generate_password();
        let password_hash = self.hasher.hash(password.clone()).await?;
        let secret = totp::generate_secret();
        let wrapped_secret = self
            .master
            .wrap_text(&secret)
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        let codes = totp::generate_recovery_codes();
        let hashes: Vec<String> = codes.iter().map(|c| totp::hash_recovery_code(c)).collect();
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let id = UserId::new_random();
        let display_name = if display_name.trim().is_empty() {
            username
        } else {
            display_name.trim()
        };
        check_shown_text("a display name", display_name)?;
        let mut tx = self.begin().await?;
        users::insert_user(
            &mut tx,
            &NewUser {
                id,
                org_id: org.id,
                username,
                display_name,
                password_hash: &password_hash,
                totp_secret: &wrapped_secret,
                roles: &roles,
                recovery_code_hashes: &hashes,
            },
            self.clock.now(),
        )
        .await?;
        self.commit(
            tx,
            AccessEvent::new(
                by.actor,
                Logged::UserCreated,
                Target::User(id.0),
                Outcome::Succeeded,
            )
            .with_client(&by.client),
        )
        .await?;
        Ok(NewAccount {
            user_id: id,
            username: username.to_owned(),
            password,
            totp_uri: SecretString::from(totp::otpauth_uri(
                &self.settings.issuer,
                username,
                &secret,
            )),
            recovery_codes: codes.into_iter().map(SecretString::from).collect(),
        })
    }

    /// Creates the first admin (and its organization) on a database without one.
    pub async fn bootstrap(&self, username: &str, org_name: &str) -> Result<NewAccount, AuthError> {
        if users::admin_exists(&self.db).await? {
            return Err(AuthError::Conflict(
                "an admin exists already; bootstrap only works on a database without one".into(),
            ));
        }
        if users::find_org(&self.db, org_name.trim()).await?.is_none() {
            self.create_org(&By::system(), org_name, true).await?;
        }
        let account = self
            .create_user(&By::system(), username, username, org_name, &[Role::Admin])
            .await?;
        self.log(AccessEvent::new(
            Actor::System,
            Logged::AdminBootstrapped,
            Target::User(account.user_id.0),
            Outcome::Succeeded,
        ))
        .await?;
        Ok(account)
    }

    /// Every user.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, AuthError> {
        Ok(users::list(&self.db).await?)
    }

    /// The user with this id or user name.
    pub async fn find_user(&self, id_or_name: &str) -> Result<UserRow, AuthError> {
        let found = match id_or_name.parse::<UserId>() {
            Ok(id) => users::find_by_id(&self.db, id).await?,
            Err(_) => users::find_by_username(&self.db, id_or_name).await?,
        };
        found.ok_or(AuthError::NotFound(NOT_FOUND_USER))
    }

    /// Disables a user: every session and token of theirs stops working at once.
    pub async fn disable_user(&self, by: &By, id: UserId) -> Result<(), AuthError> {
        let mut tx = self.begin().await?;
        if !users::disable(&mut tx, id).await? {
            return Err(AuthError::NotFound(NOT_FOUND_USER));
        }
        self.commit(
            tx,
            AccessEvent::new(
                by.actor,
                Logged::UserDisabled,
                Target::User(id.0),
                Outcome::Succeeded,
            )
            .with_client(&by.client),
        )
        .await
    }

    /// Replaces a user's roles.
    pub async fn set_roles(
        &self,
        by: &By,
        id: UserId,
        roles: &[Role],
    ) -> Result<Vec<Role>, AuthError> {
        if roles.is_empty() {
            return Err(AuthError::Invalid("a user needs at least one role".into()));
        }
        if users::find_by_id(&self.db, id).await?.is_none() {
            return Err(AuthError::NotFound(NOT_FOUND_USER));
        }
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let mut tx = self.begin().await?;
        users::set_roles(&mut tx, id, &roles).await?;
        self.commit(
            tx,
            AccessEvent::new(
                by.actor,
                Logged::RolesChanged,
                Target::User(id.0),
                Outcome::Succeeded,
            )
            .with_client(&by.client),
        )
        .await?;
        Ok(roles)
    }

    /// Lifts a user's lockout before it ends by itself.
    pub async fn unlock_user(&self, by: &By, id: UserId) -> Result<(), AuthError> {
        let mut tx = self.begin().await?;
        if !users::clear_failures(&mut tx, id).await? {
            return Err(AuthError::NotFound(NOT_FOUND_USER));
        }
        self.commit(
            tx,
            AccessEvent::new(
                by.actor,
                Logged::AccountUnlocked,
                Target::User(id.0),
                Outcome::Succeeded,
            )
            .with_client(&by.client),
        )
        .await
    }

    // ----- login, refresh, logout -----

    /// Password plus second factor; on success a new session and its tokens.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        request: LoginRequest,
        client: &Client,
    ) -> Result<IssuedSession, AuthError> {
        let now = self.clock.now();
        let addr = client.addr.map(|a| a.to_string());
        // Every attempt is counted before it is judged, against the address and against the
        // account (or, for a name no account has, against the name, so that lockout answers
        // alike whether the account exists): parallel attempts cannot all be judged against
        // one count, and those over the limit are refused unjudged.
        if let Some(addr) = &addr {
            let throttle = login_throttle::reserve(&self.db, addr).await?;
            let limit = i64::from(self.settings.max_failed_logins_per_address);
            let locked = lockout::is_locked(throttle.locked_until, now);
            if locked || throttle.failures > limit {
                login_throttle::release(&self.db, addr).await?;
                self.login_event(
                    Actor::Anonymous,
                    Target::Service,
                    Outcome::Denied,
                    "client address locked out",
                    client,
                )
                .await?;
                return Err(AuthError::LockedOut {
                    retry_after_secs: self
                        .retry_after(locked.then_some(throttle.locked_until).flatten(), now),
                });
            }
        }
        // A name no account can have (control characters, NUL) is looked up nowhere: it is
        // an unknown user, not a database error.
        let username = request.username.trim();
        let user = if is_valid_username(username) {
            users::find_by_username(&self.db, username).await?
        } else {
            None
        };
        let name_key = unknown_name_key(username);
        let account_limit = i64::from(self.settings.max_failed_logins_per_account);
        let (failures, locked_until) = match &user {
            Some(user) => {
                let (failures, _, until) = users::reserve_attempt(&self.db, user.id).await?;
                (failures, until)
            }
            None => {
                let state = login_throttle::reserve(&self.db, &name_key).await?;
                (state.failures, state.locked_until)
            }
        };
        let locked = lockout::is_locked(locked_until, now);
        if locked || failures > account_limit {
            match &user {
                Some(user) => users::release_attempt(&self.db, user.id).await?,
                None => login_throttle::release(&self.db, &name_key).await?,
            }
            if let Some(addr) = &addr {
                login_throttle::release(&self.db, addr).await?;
            }
            let (actor, target) = match &user {
                Some(u) => (Actor::User(u.id.0), Target::User(u.id.0)),
                None => (Actor::Anonymous, Target::UnknownAccount),
            };
            self.login_event(actor, target, Outcome::Denied, "account locked out", client)
                .await?;
            return Err(AuthError::LockedOut {
                retry_after_secs: self.retry_after(locked.then_some(locked_until).flatten(), now),
            });
        }
        let password_ok = self
            .hasher
            .verify(
                request.password,
                user.as_ref().map(|u| u.password_hash.as_str()),
            )
            .await?;
        let Some(user) = user else {
            self.failed_login(None, username, addr.as_deref(), "unknown user name", client)
                .await?;
            return Err(AuthError::LoginFailed);
        };
        if !password_ok {
            self.failed_login(
                Some(&user),
                username,
                addr.as_deref(),
                "wrong password",
                client,
            )
            .await?;
            return Err(AuthError::LoginFailed);
        }
        if user.disabled {
            self.failed_login(
                Some(&user),
                username,
                addr.as_deref(),
                "account disabled",
                client,
            )
            .await?;
            return Err(AuthError::LoginFailed);
        }
        self.second_factor(
            &user,
            request.totp,
            request.recovery_code,
            addr.as_deref(),
            client,
            now,
        )
        .await?;
        // The address gives back this attempt only: another account's failures from the same
        // address still count.
        if let Some(addr) = &addr {
            login_throttle::release(&self.db, addr).await?;
        }
        let mut tx = self.begin().await?;
        users::clear_failures(&mut tx, user.id).await?;
        let session_id = SessionId::new_random();
        let csrf = tokens::generate_csrf_token();
        let expires_at = now + secs(self.settings.session_ttl_secs);
        let session = SessionRow {
            id: session_id,
            user_id: user.id,
            csrf_hash: tokens::hash_token(&csrf),
            expires_at,
            revoked_at: None,
        };
        let refresh = self.sign(TokenKind::Refresh, &session, now, expires_at)?;
        sessions::insert(&mut tx, &session, &tokens::hash_token(&refresh), now).await?;
        let issued = self.issue(&session, refresh, Some(csrf), now)?;
        let event = AccessEvent::new(
            Actor::User(user.id.0),
            Logged::LoginSucceeded,
            Target::Session(session_id.0),
            Outcome::Granted,
        )
        .with_client(client);
        self.commit(tx, event).await?;
        Ok(issued)
    }

    async fn second_factor(
        &self,
        user: &UserRow,
        code: Option<SecretString>,
        recovery: Option<SecretString>,
        addr: Option<&str>,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let only_recipient = user.roles.iter().all(|r| *r == Role::Recipient);
        let required = !only_recipient || self.settings.require_totp_for_recipients;
        if let Some(recovery) = recovery {
            let hash = totp::hash_recovery_code(recovery.expose_secret());
            if users::use_recovery_code(&self.db, user.id, &hash, now).await? {
                return Ok(());
            }
            self.failed_login(
                Some(user),
                &user.username,
                addr,
                "wrong or used recovery code",
                client,
            )
            .await?;
            return Err(AuthError::LoginFailed);
        }
        let (Some(code), Some(secret)) = (code, user.totp_secret.as_deref()) else {
            if !required {
                return Ok(());
            }
            // The password was right: say what is missing, but count it (guessing continues
            // to cost attempts).
            self.login_event(
                Actor::User(user.id.0),
                Target::User(user.id.0),
                Outcome::Denied,
                "second factor missing",
                client,
            )
            .await?;
            return Err(AuthError::SecondFactorRequired);
        };
        let secret = self.totp_seed(user, secret).await?;
        let Some(step) = totp::matching_step(secret.expose_secret(), code.expose_secret(), now)
        else {
            self.failed_login(Some(user), &user.username, addr, "wrong TOTP code", client)
                .await?;
            return Err(AuthError::LoginFailed);
        };
        if !users::claim_totp_step(&self.db, user.id, step).await? {
            self.failed_login(
                Some(user),
                &user.username,
                addr,
                "TOTP code already used",
                client,
            )
            .await?;
            return Err(AuthError::LoginFailed);
        }
        Ok(())
    }

    /// The TOTP seed of `user`: unwrapped, or, written before seeds were wrapped, wrapped now.
    async fn totp_seed(&self, user: &UserRow, stored: &str) -> Result<SecretString, AuthError> {
        let unwrap_error =
            |e: crate::crypto::master::MasterKeyError| AuthError::Hashing(e.to_string());
        if let Some(seed) = self.master.unwrap_text(stored).map_err(unwrap_error)? {
            return Ok(seed);
        }
        let wrapped = self.master.wrap_text(stored).map_err(unwrap_error)?;
        let mut conn = self.db.pool().acquire().await.map_err(DbError::from)?;
        users::set_totp_secret(&mut conn, user.id, &wrapped).await?;
        Ok(SecretString::from(stored.to_owned()))
    }

    async fn login_event(
        &self,
        actor: Actor,
        target: Target,
        outcome: Outcome,
        reason: &'static str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let event = AccessEvent::new(actor, Logged::LoginFailed, target, outcome)
            .with_reason(Reason::new(reason))
            .with_client(client);
        self.log(event).await
    }

    /// Logs a failure (already counted when the attempt began) and locks the account, the
    /// unknown name, or the address when its count reached the limit; of concurrent failures
    /// only one locks, so one crossing of the limit is one lockout.
    async fn failed_login(
        &self,
        user: Option<&UserRow>,
        username: &str,
        addr: Option<&str>,
        reason: &'static str,
        client: &Client,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        let (actor, target) = match user {
            Some(u) => (Actor::User(u.id.0), Target::User(u.id.0)),
            None => (Actor::Anonymous, Target::UnknownAccount),
        };
        self.login_event(actor, target.clone(), Outcome::Denied, reason, client)
            .await?;
        let until = |lockouts| now + lockout::lockout_duration(&self.settings, lockouts);
        let account_limit = i64::from(self.settings.max_failed_logins_per_account);
        // Each lock commits with its event.
        let mut tx = self.begin().await?;
        let account_locked = match user {
            Some(user) => {
                users::lock_if_reached(&mut tx, user.id, account_limit, now, until).await?
            }
            None => {
                login_throttle::lock_if_reached(
                    &mut tx,
                    &unknown_name_key(username),
                    account_limit,
                    now,
                    until,
                )
                .await?
            }
        };
        if account_locked {
            let event =
                AccessEvent::new(actor, Logged::AccountLockedOut, target, Outcome::Succeeded)
                    .with_reason(Reason::new("too many failed logins on the account"))
                    .with_client(client);
            self.commit(tx, event).await?;
        } else {
            drop(tx);
        }
        if let Some(addr) = addr {
            let limit = i64::from(self.settings.max_failed_logins_per_address);
            let mut tx = self.begin().await?;
            if login_throttle::lock_if_reached(&mut tx, addr, limit, now, until).await? {
                let event = AccessEvent::new(
                    Actor::Anonymous,
                    Logged::AddressLockedOut,
                    Target::Service,
                    Outcome::Succeeded,
                )
                .with_reason(Reason::new(
                    "too many failed logins from the client address",
                ))
                .with_client(client);
                self.commit(tx, event).await?;
            }
        }
        Ok(())
    }

    /// Seconds until a lock ends; a refusal over the count without a lock yet (parallel
    /// attempts) says the first lockout's length.
    fn retry_after(&self, locked_until: Option<OffsetDateTime>, now: OffsetDateTime) -> u64 {
        match locked_until {
            Some(_) => lockout::retry_after(locked_until, now),
            None => self.settings.lockout_secs.max(1),
        }
    }

    fn sign(
        &self,
        kind: TokenKind,
        session: &SessionRow,
        now: OffsetDateTime,
        expires: OffsetDateTime,
    ) -> Result<String, AuthError> {
        let claims = Claims::new(
            &self.settings.issuer,
            kind,
            session.user_id.0,
            session.id.0,
            now,
            expires,
        );
        Ok(self.keyring.sign(&claims)?)
    }

    fn issue(
        &self,
        session: &SessionRow,
        refresh: String,
        csrf: Option<String>,
        now: OffsetDateTime,
    ) -> Result<IssuedSession, AuthError> {
        let access_expires =
            (now + secs(self.settings.access_token_ttl_secs)).min(session.expires_at);
        let access = self.sign(TokenKind::Access, session, now, access_expires)?;
        Ok(IssuedSession {
            user_id: session.user_id,
            session_id: session.id,
            access_token: SecretString::from(access),
            refresh_token: SecretString::from(refresh),
            csrf_token: csrf.map(SecretString::from),
            access_expires_in: whole_secs(access_expires - now),
            session_expires_in: whole_secs(session.expires_at - now),
        })
    }

    /// Exchanges a refresh token for new tokens. A token used before revokes its whole session.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(
        &self,
        token: &SecretString,
        csrf: Option<&str>,
        route: &'static str,
        client: &Client,
    ) -> Result<IssuedSession, AuthError> {
        let now = self.clock.now();
        let claims = match tokens::verify(
            &self.keyring,
            token.expose_secret(),
            TokenKind::Refresh,
            &self.settings.issuer,
            now,
            self.settings.jwt_leeway_secs,
        ) {
            Ok(claims) => claims,
            Err(rejected) => {
                return Err(self
                    .refuse(Actor::Anonymous, route, rejected.0, client)
                    .await)
            }
        };
        // A refresh by cookie carries the CSRF token, which must be this session's own (not
        // merely equal to a cookie an attacker may have planted), checked before the refresh
        // token is spent.
        if let Some(csrf) = csrf {
            let session = claims.sid.parse::<SessionId>().ok();
            let matches = match session {
                Some(session) => self.csrf_matches(session, Some(csrf)).await?,
                None => false,
            };
            if !matches {
                return Err(AuthError::Csrf);
            }
        }
        let hash = tokens::hash_token(token.expose_secret());
        // Spending the token is its own small transaction: of two concurrent uses one wins,
        // and a token spent without a new one issued only costs its holder a sign-in.
        let spent = {
            let mut conn = self.db.pool().acquire().await.map_err(DbError::from)?;
            sessions::use_refresh_token(&mut conn, &hash, now).await?
        };
        let session_id = match spent {
            RefreshUse::Fresh(id) => id,
            RefreshUse::Reused(id) => {
                let mut tx = self.begin().await?;
                sessions::revoke(&mut tx, id, "refresh token reused", now).await?;
                let event = AccessEvent::new(
                    actor_of(&claims),
                    Logged::RefreshTokenReused,
                    Target::Session(id.0),
                    Outcome::Denied,
                )
                .with_reason(Reason::new("refresh token used twice: session revoked"))
                .with_client(client);
                self.commit(tx, event).await?;
                return Err(AuthError::Unauthenticated(Reason::new(
                    "refresh token used twice: session revoked",
                )));
            }
            RefreshUse::Unknown => {
                return Err(self
                    .refuse(
                        actor_of(&claims),
                        route,
                        Reason::new("unknown refresh token"),
                        client,
                    )
                    .await)
            }
        };
        let session = self
            .live_session(session_id, &claims, route, client, now)
            .await?;
        let refresh = self.sign(TokenKind::Refresh, &session, now, session.expires_at)?;
        let mut tx = self.begin().await?;
        sessions::add_refresh_token(&mut tx, session.id, &tokens::hash_token(&refresh), now)
            .await?;
        let issued = self.issue(&session, refresh, None, now)?;
        let event = AccessEvent::new(
            Actor::User(session.user_id.0),
            Logged::SessionRefreshed,
            Target::Session(session.id.0),
            Outcome::Granted,
        )
        .with_client(client);
        self.commit(tx, event).await?;
        Ok(issued)
    }

    /// Revokes the principal's session.
    pub async fn logout(&self, principal: &Principal, client: &Client) -> Result<(), AuthError> {
        let Credential::Session { session, .. } = principal.credential else {
            return Err(AuthError::Invalid(
                "an API token has no session to end; revoke it with DELETE /api/v1/me/tokens/{id}"
                    .into(),
            ));
        };
        let mut tx = self.begin().await?;
        sessions::revoke(&mut tx, session, "logout", self.clock.now()).await?;
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::LoggedOut,
            Target::Session(session.0),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.commit(tx, event).await
    }

    /// Logs a refused credential and returns the 401 to send.
    async fn refuse(
        &self,
        actor: Actor,
        route: &'static str,
        reason: Reason,
        client: &Client,
    ) -> AuthError {
        let now = self.clock.now();
        let (closed, over) = self.count_refusal(client, now);
        for (addr, window) in closed {
            let suppressed = window
                .refused
                .saturating_sub(self.settings.refusals_logged_per_minute);
            let event = AccessEvent::new(
                Actor::Anonymous,
                Logged::Authentication,
                Target::Service,
                Outcome::Denied,
            )
            .with_reason(Reason::new(
                "further refusals from the client address in one minute (count in bytes)",
            ))
            .with_count(suppressed)
            .with_client(&Client {
                addr: Some(addr),
                ..Client::default()
            });
            if let Err(e) = self.log(event).await {
                return e;
            }
        }
        if let Some(retry_after_secs) = over {
            return AuthError::RateLimited { retry_after_secs };
        }
        let event = AccessEvent::new(
            actor,
            Logged::Authentication,
            Target::Route(route),
            Outcome::Denied,
        )
        .with_reason(reason)
        .with_client(client);
        match self.log(event).await {
            Ok(()) => AuthError::Unauthenticated(reason),
            Err(e) => e,
        }
    }

    /// Counts a refusal from the client's address. Returns the windows that closed and
    /// suppressed refusals (to log as aggregates), and, when this refusal is over the window's
    /// share, the seconds until the window ends.
    fn count_refusal(
        &self,
        client: &Client,
        now: OffsetDateTime,
    ) -> (Vec<(std::net::IpAddr, RefusalWindow)>, Option<u64>) {
        let Some(addr) = client.addr else {
            return (Vec::new(), None);
        };
        // A poisoned lock only means another request panicked mid-count; the counts stay usable.
        let mut windows = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut closed = Vec::new();
        let expired = |w: &RefusalWindow| now - w.started >= REFUSAL_WINDOW;
        if windows.by_address.get(&addr).is_some_and(expired)
            || windows.by_address.len() >= REFUSAL_ADDRESSES
        {
            let done: Vec<std::net::IpAddr> = windows
                .by_address
                .iter()
                .filter(|(a, w)| {
                    expired(w) || (windows.by_address.len() >= REFUSAL_ADDRESSES && **a == addr)
                })
                .map(|(a, _)| *a)
                .collect();
            for a in done {
                if let Some(w) = windows.by_address.remove(&a) {
                    if w.refused > self.settings.refusals_logged_per_minute {
                        closed.push((a, w));
                    }
                }
            }
            if windows.by_address.len() >= REFUSAL_ADDRESSES {
                // Every window is open and the table is full: start over rather than grow.
                windows.by_address.clear();
            }
        }
        let window = windows.by_address.entry(addr).or_insert(RefusalWindow {
            started: now,
            refused: 0,
        });
        window.refused += 1;
        let over = (window.refused > self.settings.refusals_logged_per_minute).then(|| {
            let left = REFUSAL_WINDOW - (now - window.started);
            u64::try_from(left.whole_seconds().max(1)).unwrap_or(1)
        });
        (closed, over)
    }

    /// The roles a user holds that are in force: staff roles count only for people of the
    /// agency, so a director of a requesting organization directs nothing at the agency.
    async fn roles_in_force(&self, user: &UserRow) -> Result<Vec<Role>, AuthError> {
        if !user.roles.iter().any(|r| r.is_staff()) {
            return Ok(user.roles.clone());
        }
        let agency = users::find_org(&self.db, &user.org_id.to_string())
            .await?
            .is_some_and(|org| org.agency);
        Ok(user
            .roles
            .iter()
            .copied()
            .filter(|r| agency || !r.is_staff())
            .collect())
    }

    /// The session named by verified claims, if it is still live and its user enabled.
    async fn live_session(
        &self,
        id: SessionId,
        claims: &Claims,
        route: &'static str,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<SessionRow, AuthError> {
        let actor = actor_of(claims);
        let Some(session) = sessions::find(&self.db, id).await? else {
            return Err(self
                .refuse(actor, route, Reason::new("unknown session"), client)
                .await);
        };
        if session.id.to_string() != claims.sid || session.user_id.to_string() != claims.sub {
            return Err(self
                .refuse(
                    actor,
                    route,
                    Reason::new("token does not match its session"),
                    client,
                )
                .await);
        }
        if session.revoked_at.is_some() {
            return Err(self
                .refuse(actor, route, Reason::new("session revoked"), client)
                .await);
        }
        if session.expires_at <= now {
            return Err(self
                .refuse(actor, route, Reason::new("session expired"), client)
                .await);
        }
        let user = users::find_by_id(&self.db, session.user_id).await?;
        if user.is_none_or(|u| u.disabled) {
            return Err(self
                .refuse(actor, route, Reason::new("user disabled"), client)
                .await);
        }
        Ok(session)
    }

    /// Turns the presented credential into a principal, or logs the refusal and returns a 401.
    pub async fn authenticate(
        &self,
        presented: PresentedCredential,
        route: &'static str,
        client: &Client,
    ) -> Result<Principal, AuthError> {
        let now = self.clock.now();
        let (token, via_cookie) = match presented {
            PresentedCredential::None => {
                return Err(self
                    .refuse(
                        Actor::Anonymous,
                        route,
                        Reason::new("no credentials"),
                        client,
                    )
                    .await)
            }
            PresentedCredential::Bearer(token) => (token, false),
            PresentedCredential::Cookie(token) => (token, true),
        };
        if !via_cookie && token.expose_secret().starts_with(API_TOKEN_PREFIX) {
            return self
                .authenticate_api_token(&token, route, client, now)
                .await;
        }
        let claims = match tokens::verify(
            &self.keyring,
            token.expose_secret(),
            TokenKind::Access,
            &self.settings.issuer,
            now,
            self.settings.jwt_leeway_secs,
        ) {
            Ok(claims) => claims,
            Err(rejected) => {
                return Err(self
                    .refuse(Actor::Anonymous, route, rejected.0, client)
                    .await)
            }
        };
        let Ok(session_id) = claims.sid.parse::<SessionId>() else {
            return Err(self
                .refuse(
                    Actor::Anonymous,
                    route,
                    Reason::new("malformed token"),
                    client,
                )
                .await);
        };
        let session = self
            .live_session(session_id, &claims, route, client, now)
            .await?;
        let user = users::find_by_id(&self.db, session.user_id)
            .await?
            .ok_or(AuthError::NotFound(NOT_FOUND_USER))?;
        let roles = self.roles_in_force(&user).await?;
        Ok(Principal {
            user_id: user.id,
            org_id: user.org_id,
            held_roles: user.roles.clone(),
            roles,
            must_change_password: user.must_change_password,
            credential: Credential::Session {
                session: session.id,
                via_cookie,
            },
        })
    }

    async fn authenticate_api_token(
        &self,
        token: &SecretString,
        route: &'static str,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<Principal, AuthError> {
        let hash = tokens::hash_token(token.expose_secret());
        let Some(row) = api_tokens::find_by_hash(&self.db, &hash).await? else {
            return Err(self
                .refuse(
                    Actor::Anonymous,
                    route,
                    Reason::new("unknown API token"),
                    client,
                )
                .await);
        };
        let actor = Actor::User(row.user_id.0);
        if row.revoked_at.is_some() {
            return Err(self
                .refuse(actor, route, Reason::new("API token revoked"), client)
                .await);
        }
        if row.expires_at <= now {
            return Err(self
                .refuse(actor, route, Reason::new("API token expired"), client)
                .await);
        }
        let user = users::find_by_id(&self.db, row.user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled) else {
            return Err(self
                .refuse(actor, route, Reason::new("user disabled"), client)
                .await);
        };
        // Scoped to the owner's roles in force: never more than they hold today.
        let in_force = self.roles_in_force(&user).await?;
        let roles = row
            .roles
            .iter()
            .copied()
            .filter(|r| in_force.contains(r))
            .collect();
        Ok(Principal {
            user_id: user.id,
            org_id: user.org_id,
            roles,
            held_roles: user.roles,
            must_change_password: user.must_change_password,
            credential: Credential::ApiToken(row.id),
        })
    }

    /// Whether `presented` is the CSRF token of the principal's cookie session.
    pub async fn csrf_matches(
        &self,
        session: SessionId,
        presented: Option<&str>,
    ) -> Result<bool, AuthError> {
        let Some(presented) = presented else {
            return Ok(false);
        };
        let Some(row) = sessions::find(&self.db, session).await? else {
            return Ok(false);
        };
        Ok(totp::constant_time_eq(
            row.csrf_hash.as_bytes(),
            tokens::hash_token(presented).as_bytes(),
        ))
    }

    /// Changes the principal's password after checking the current one and the policy.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: SecretString,
        new: SecretString,
        client: &Client,
    ) -> Result<(), AuthError> {
        let user = users::find_by_id(&self.db, principal.user_id)
            .await?
            .ok_or(AuthError::NotFound(NOT_FOUND_USER))?;
        // A wrong current password is a failed login: counted before it is judged, and the
        // account locks as it would at the login form (a stolen session must not be a way to
        // guess the password without limit).
        let now = self.clock.now();
        let limit = i64::from(self.settings.max_failed_logins_per_account);
        let (failures, _, locked_until) = users::reserve_attempt(&self.db, user.id).await?;
        if lockout::is_locked(locked_until, now) || failures > limit {
            users::release_attempt(&self.db, user.id).await?;
            return Err(AuthError::LockedOut {
                retry_after_secs: self.retry_after(locked_until, now),
            });
        }
        if !self
            .hasher
            .verify(current, Some(&user.password_hash))
            .await?
        {
            self.failed_login(
                Some(&user),
                &user.username,
                None,
                "wrong current password",
                client,
            )
            .await?;
            return Err(AuthError::Invalid("current_password is wrong".into()));
        }
        {
            let mut conn = self.db.pool().acquire().await.map_err(DbError::from)?;
            users::clear_failures(&mut conn, user.id).await?;
        }
        self.hasher.check_policy(&new, &user.username)?;
        let hash = self.hasher.hash(new).await?;
        let mut tx = self.begin().await?;
        users::set_password_hash(&mut tx, user.id, &hash).await?;
        // Whoever else holds a session or a token of this account loses it: changing the
        // password is what a user does when they fear someone else has it.
        let keep = match principal.credential {
            Credential::Session { session, .. } => Some(session),
            Credential::ApiToken(_) => None,
        };
        sessions::revoke_all_of_user(&mut tx, user.id, keep, "password changed", now).await?;
        api_tokens::revoke_all_of_user(&mut tx, user.id, now).await?;
        let event = AccessEvent::new(
            Actor::User(user.id.0),
            Logged::PasswordChanged,
            Target::User(user.id.0),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.commit(tx, event).await
    }

    // ----- API tokens -----

    /// Creates an API token for the principal, scoped to `roles` (default: all the principal's
    /// roles); returns it with its secret, shown once.
    pub async fn create_api_token(
        &self,
        principal: &Principal,
        name: &str,
        ttl_days: Option<u32>,
        roles: Option<Vec<Role>>,
        client: &Client,
    ) -> Result<(ApiTokenRow, SecretString), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(AuthError::Invalid(
                "a token name must have 1 to 100 characters".into(),
            ));
        }
        check_shown_text("a token name", name)?;
        let days = ttl_days.unwrap_or(self.settings.api_token_default_ttl_days);
        if days == 0 || days > self.settings.api_token_max_ttl_days {
            return Err(AuthError::Invalid(format!(
                "expires_in_days must be between 1 and {}",
                self.settings.api_token_max_ttl_days
            )));
        }
        let mut roles = roles.unwrap_or_else(|| principal.roles.clone());
        if let Some(extra) = roles.iter().find(|r| !principal.roles.contains(r)) {
            return Err(AuthError::Invalid(format!(
                "role `{extra}` is not held by the token's owner"
            )));
        }
        roles.sort();
        roles.dedup();
        let now = self.clock.now();
        let secret = tokens::generate_api_token();
        let row = ApiTokenRow {
            id: ApiTokenId::new_random(),
            user_id: principal.user_id,
            name: name.to_owned(),
            roles,
            created_at: now,
            expires_at: now + Duration::days(i64::from(days)),
            revoked_at: None,
        };
        let mut tx = self.begin().await?;
        api_tokens::insert(&mut tx, &row, &tokens::hash_token(&secret)).await?;
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::ApiTokenCreated,
            Target::ApiToken(row.id.0),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.commit(tx, event).await?;
        Ok((row, SecretString::from(secret)))
    }

    /// A user's API tokens.
    pub async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenRow>, AuthError> {
        Ok(api_tokens::list_for_user(&self.db, user).await?)
    }

    /// The API token with this id.
    pub async fn api_token(&self, id: ApiTokenId) -> Result<ApiTokenRow, AuthError> {
        api_tokens::find(&self.db, id)
            .await?
            .ok_or(AuthError::NotFound("API token"))
    }

    /// Revokes an API token (the caller has authorized it).
    pub async fn revoke_api_token(
        &self,
        actor: &Principal,
        id: ApiTokenId,
        client: &Client,
    ) -> Result<(), AuthError> {
        let mut tx = self.begin().await?;
        if !api_tokens::revoke(&mut tx, id, self.clock.now()).await? {
            return Err(AuthError::Conflict(
                "the API token is revoked already".into(),
            ));
        }
        let event = AccessEvent::new(
            Actor::User(actor.user_id.0),
            Logged::ApiTokenRevoked,
            Target::ApiToken(id.0),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.commit(tx, event).await
    }

    // ----- recipient keys -----

    /// Registers a public key for the principal after parsing it.
    pub async fn add_recipient_key(
        &self,
        principal: &Principal,
        public_key: &str,
        label: &str,
        client: &Client,
    ) -> Result<RecipientKeyRow, AuthError> {
        let key = parse_recipient_key(public_key)?;
        if label.len() > 100 {
            return Err(AuthError::Invalid(
                "a key label must have at most 100 characters".into(),
            ));
        }
        let row = RecipientKeyRow {
            id: RecipientKeyId::new_random(),
            user_id: principal.user_id,
            kind: key.kind.to_owned(),
            public_key: key.text,
            label: label.trim().to_owned(),
            created_at: self.clock.now(),
        };
        let mut tx = self.begin().await?;
        if !recipient_keys::insert(&mut tx, &row).await? {
            return Err(AuthError::Conflict(
                "this public key is registered already".into(),
            ));
        }
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::RecipientKeyAdded,
            Target::RecipientKey(row.id.0),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.commit(tx, event).await?;
        Ok(row)
    }

    /// A user's registered keys.
    pub async fn list_recipient_keys(
        &self,
        user: UserId,
    ) -> Result<Vec<RecipientKeyRow>, AuthError> {
        Ok(recipient_keys::list_for_user(&self.db, user).await?)
    }

    /// Removes one of the principal's keys.
    pub async fn remove_recipient_key(
        &self,
        principal: &Principal,
        id: RecipientKeyId,
        client: &Client,
    ) -> Result<(), AuthError> {
        let mut tx = self.begin().await?;
        if !recipient_keys::delete(&mut tx, principal.user_id, id).await? {
            return Err(AuthError::NotFound("recipient key"));
        }
        let event = AccessEvent::new(
            Actor::User(principal.user_id.0),
            Logged::RecipientKeyRemoved,
            Target::RecipientKey(id.0),
            Outcome::Succeeded,
        )
        .with_client(client);
        self.commit(tx, event).await
    }
}

fn actor_of(claims: &Claims) -> Actor {
    claims.sub.parse().map_or(Actor::Anonymous, Actor::User)
}

fn secs(value: u64) -> Duration {
    Duration::seconds(i64::try_from(value).unwrap_or(i64::MAX / 2))
}

fn whole_secs(d: Duration) -> u64 {
    u64::try_from(d.whole_seconds()).unwrap_or(0)
}

/// 1 to 64 of letters, digits and `._-@`.
fn is_valid_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= 64
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

/// Refuses text shown to people (names of organizations, users, tokens) that holds control
/// characters or bidirectional formatting characters, which can make one name look like
/// another in a list or a log review.
fn check_shown_text(what: &str, text: &str) -> Result<(), AuthError> {
    let bidi = |c: char| matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if text.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(AuthError::Invalid(format!(
            "{what} may not contain control or bidirectional formatting characters"
        )));
    }
    Ok(())
}

/// The throttle key of a name no account has, so that its failures lock it exactly as an
/// account's would (lockout then says nothing about whether the account exists). Names are
/// case-folded, so that variants of one guess share a count; bad names share one key.
fn unknown_name_key(username: &str) -> String {
    if is_valid_username(username) {
        format!("name:{}", username.to_ascii_lowercase())
    } else {
        "name:(invalid)".to_owned()
    }
}

/// Who changes the directory, and from where: an administrator over HTTPS (whose client
/// address goes into every event), or the shell (`steward admin`, acting as `system`).
#[derive(Debug, Clone)]
pub struct By {
    /// Who.
    pub actor: Actor,
    /// From where (empty for the shell).
    pub client: Client,
}

impl By {
    /// The shell, or Steward itself.
    pub fn system() -> By {
        By {
            actor: Actor::System,
            client: Client::default(),
        }
    }
}
