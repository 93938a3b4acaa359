//! `steward admin ...`: the first admin, users and organizations, from the server's shell.
//! Acts as `system` in the access log (whoever can run this can read the data directory).

use std::sync::Arc;

use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::app::{build_authenticator, connect_database, StartupError};
use crate::audit::AuditLog;
use crate::auth::{AuthError, Authenticator, By, NewAccount};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::domain::role::Role;

/// `steward admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the first admin on a database without one; prints a one-time password, the TOTP
    /// URI and recovery codes. Refuses if any admin exists.
    #[command(
        after_help = "Example:\n  steward admin bootstrap --username admin --org \"State Health Data Agency\""
    )]
    Bootstrap {
        /// Login name of the admin.
        #[arg(long, default_value = "admin")]
        username: String,
        /// The agency's organization (created if missing).
        #[arg(long, default_value = "Agency")]
        org: String,
    },
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
}

/// `steward admin user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a one-time password, the TOTP URI and recovery codes.
    #[command(
        after_help = "Example:\n  steward admin user add --username jdoe --org \"University\" --role recipient"
    )]
    Add {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Name shown to people (defaults to the login name).
        #[arg(long, default_value = "")]
        name: String,
        /// Organization id or name.
        #[arg(long)]
        org: String,
        /// A role (repeat for several): recipient, it_staff, executive_director, privacy_officer, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
    },
    /// List users.
    #[command(
        after_help = "Examples:\n  steward admin user list\n  steward admin user list --json"
    )]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user (accounts are never deleted: the access log refers to them).
    #[command(after_help = "Example:\n  steward admin user disable jdoe")]
    Disable {
        /// User id or login name.
        user: String,
    },
    /// Replace a user's roles.
    #[command(
        after_help = "Example:\n  steward admin user roles jdoe --role recipient --role it_staff"
    )]
    Roles {
        /// User id or login name.
        user: String,
        /// The new roles (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
    },
    /// Lift a user's login lockout.
    #[command(after_help = "Example:\n  steward admin user unlock jdoe")]
    Unlock {
        /// User id or login name.
        user: String,
    },
}

/// `steward admin org ...`
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    #[command(
        after_help = "Examples:\n  steward admin org add \"State University\"\n  steward admin org add Agency --agency"
    )]
    Add {
        /// Its unique name.
        name: String,
        /// Mark it as the agency: staff roles are in force only for its people (bootstrap marks
        /// the first administrator's organization).
        #[arg(long)]
        agency: bool,
    },
    /// List organizations.
    #[command(after_help = "Examples:\n  steward admin org list\n  steward admin org list --json")]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Steward's database, keyring or settings are unusable.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The change was refused or failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Runs an admin command against the configured database (migrating it first).
pub async fn run(settings: &Settings, command: AdminCommand) -> Result<(), AdminError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| StartupError::DataDir {
        path: settings.data_dir.clone(),
        source,
    })?;
    let db = connect_database(settings).await?;
    db.migrate().await.map_err(StartupError::from)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let audit = AuditLog::new(db.clone(), clock.clone());
    let auth = build_authenticator(settings, &db, &audit, &clock).await?;
    let result = execute(&auth, command).await;
    db.close().await;
    result
}

async fn execute(auth: &Authenticator, command: AdminCommand) -> Result<(), AdminError> {
    match command {
        AdminCommand::Bootstrap { username, org } => {
            let account = auth.bootstrap(&username, &org).await?;
            print_account(&account);
        }
        AdminCommand::User(UserCommand::Add {
            username,
            name,
            org,
            roles,
        }) => {
            let account = auth
                .create_user(&By::system(), &username, &name, &org, &roles)
                .await?;
            print_account(&account);
        }
        AdminCommand::User(UserCommand::List { json: true }) => {
            // Names, roles and status only: never the password hash or TOTP secret.
            let list: Vec<serde_json::Value> = auth
                .list_users()
                .await?
                .iter()
                .map(|user| {
                    serde_json::json!({
                        "id": user.id.to_string(),
                        "username": user.username,
                        "organization_id": user.org_id.to_string(),
                        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                        "disabled": user.disabled,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        }
        AdminCommand::User(UserCommand::List { .. }) => {
            println!("{:<36}  {:<20} {:<8} roles", "id", "username", "status");
            for user in auth.list_users().await? {
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                let status = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{:<36}  {:<20} {:<8} {}",
                    user.id,
                    user.username,
                    status,
                    roles.join(",")
                );
            }
        }
        AdminCommand::User(UserCommand::Disable { user }) => {
            let found = auth.find_user(&user).await?;
            auth.disable_user(&By::system(), found.id).await?;
            println!("user {} disabled", found.username);
        }
        AdminCommand::User(UserCommand::Roles { user, roles }) => {
            let found = auth.find_user(&user).await?;
            let roles = auth.set_roles(&By::system(), found.id, &roles).await?;
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            println!("user {} now holds: {}", found.username, names.join(", "));
        }
        AdminCommand::User(UserCommand::Unlock { user }) => {
            let found = auth.find_user(&user).await?;
            auth.unlock_user(&By::system(), found.id).await?;
            println!("user {} unlocked", found.username);
        }
        AdminCommand::Org(OrgCommand::Add { name, agency }) => {
            let org = auth.create_org(&By::system(), &name, agency).await?;
            println!("{}  {}{}", org.id, org.name, agency_mark(&org));
        }
        AdminCommand::Org(OrgCommand::List { json: true }) => {
            let list: Vec<serde_json::Value> = auth
                .list_orgs()
                .await?
                .iter()
                .map(|org| {
                    serde_json::json!({
                        "id": org.id.to_string(),
                        "name": org.name,
                        "agency": org.agency,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        }
        AdminCommand::Org(OrgCommand::List { .. }) => {
            for org in auth.list_orgs().await? {
                println!("{}  {}{}", org.id, org.name, agency_mark(&org));
            }
        }
    }
    Ok(())
}

fn agency_mark(org: &crate::db::users::OrgRow) -> &'static str {
    if org.agency {
        "  (agency)"
    } else {
        ""
    }
}

/// Prints a new account's one-time secrets to stdout (never to the log).
fn print_account(account: &NewAccount) {
    println!("user:               {}", account.username);
    println!("id:                 {}", account.user_id);
    println!("one-time password:  {}", account.password.expose_secret());
    println!("TOTP URI:           {}", account.totp_uri.expose_secret());
    println!("recovery codes (each works once):");
    for code in &account.recovery_codes {
        println!("  {}", code.expose_secret());
    }
    println!("Store these now: they are not shown again.");
}
