//! The `steward` command line. Each command parses its arguments here and hands over to the
//! library; nothing here decides policy.

pub mod admin;
pub mod audit;
pub mod client;
pub mod demo;
pub mod jobs;
mod policy;
pub mod release;
pub mod revoke;
pub mod verify;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::{connect_database, Application, StartupError};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::http::server::shutdown_signal;

/// Steward: delivers health-data extracts to approved recipients and keeps control of them.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file layered over the embedded defaults (then STEWARD_* variables).
    #[arg(long, global = true, env = "STEWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up a demo (users for every role, synthetic data, a Level I and a Level III release
    /// extracted) in a data directory of its own, print how to use it, and serve it.
    #[command(
        after_help = "Examples:\n  steward demo\n  steward demo --dir /tmp/steward-demo\n\nIt prints, for each role, a user name, password, TOTP secret and API token, the CA file,\nand the `steward client fetch` command that downloads, verifies and decrypts the Level I\nextract; DIR/demo.json holds the same facts. Run again with the same --dir, it serves what\nit made.\n\nExit codes:\n  0  stopped by Ctrl-C or SIGTERM\n  1  setup or start-up failed"
    )]
    Demo {
        /// The demo's data directory (created if missing).
        #[arg(long, value_name = "DIR", default_value = "steward-demo")]
        dir: PathBuf,
    },
    /// Serve HTTPS (and, in embedded mode, run jobs) until Ctrl-C or SIGTERM.
    #[command(
        after_help = "Examples:\n  steward serve\n  steward --config /etc/steward/steward.toml serve"
    )]
    Serve,
    /// Apply pending database migrations and exit.
    #[command(
        after_help = "Examples:\n  STEWARD_DATABASE__URL=postgres://steward@db/steward steward migrate\n  STEWARD_DATABASE__URL=postgres://owner@db/steward steward migrate --grant-to steward_app\n\nOn PostgreSQL, run migrations as the owner of the schema and serve as another role: --grant-to\ngives that role what serving needs, and on the access log only SELECT and INSERT, so the\nserver cannot rewrite, truncate or un-trigger its own log. Run it after every upgrade."
    )]
    Migrate {
        /// After migrating, grant this runtime role its privileges (PostgreSQL).
        #[arg(long, value_name = "ROLE")]
        grant_to: Option<String>,
    },
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write realistic synthetic source CSV files for every file type (deterministic per seed).
    #[command(after_help = "Example:\n  steward synth --out /tmp/synth --rows 100000 --seed 7")]
    Synth {
        /// Directory to write `<file_type>.csv` and `optout.csv` into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Number of medical-claims rows; the other files scale from it.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Seed: the same seed writes the same files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The opt-out registry of members who refused direct-identifier release (seed 001 s. 13).
    #[command(subcommand)]
    Optout(OptoutCommand),
    /// Accounts and organizations: the first admin, users, roles.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Releases: list, show, export the signed approval letter, run the DUA expiry check.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Extract jobs: start, list, show, cancel, retry.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The access log: verify it, check a receipt offline, print its key, export records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Stop access (a user, an organization, a release or a file), list and lift revocations.
    #[command(subcommand)]
    Revoke(revoke::RevokeCommand),
    /// The recipient's client: sign in, list releases, fetch (resume, verify, decrypt), check
    /// receipts.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Offline checks that need no server: a destruction certificate, an aggregate table's
    /// suppression audit.
    #[command(subcommand)]
    Verify(verify::VerifyCommand),
    /// Key material shared by replicas and workers.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run jobs without serving HTTPS until Ctrl-C or SIGTERM; any number of workers may share
    /// one database and one bucket.
    #[command(
        after_help = "Example:\n  STEWARD_DATABASE__URL=postgres://steward@db/steward steward worker"
    )]
    Worker,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Examples:\n  steward completions bash > /etc/bash_completion.d/steward\n  steward completions zsh > \"${fpath[1]}/_steward\""
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these same definitions.
    #[command(after_help = "Example:\n  steward man | man -l -")]
    Man,
}

/// `steward optout ...`
#[derive(Debug, Subcommand)]
pub enum OptoutCommand {
    /// Import a CSV with a header of `ssn` and/or `member_id`; only keyed hashes are stored.
    #[command(after_help = "Example:\n  steward optout import optout.csv")]
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

/// `steward keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make every key and secret several replicas and workers must share (master identity,
    /// signing key, JWT keys, linkage and opt-out secrets) in a new directory, and print the
    /// settings that name them.
    #[command(after_help = "Example:\n  steward keys init --dir /etc/steward/keys")]
    Init {
        /// A directory that does not exist yet (created 0700).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `steward config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it, secrets redacted.
    #[command(
        after_help = "Example:\n  steward config check --config config/production.example.toml"
    )]
    Check,
}

/// The exit codes of every command whose help names none of its own.
const COMMON_EXIT_CODES: &str = "Exit codes:\n  0  done\n  1  the command failed (standard error says why)\n  2  bad arguments or an invalid configuration";

/// The command line: the definitions above, each leaf command's help ending with its exit
/// codes (its own, or the common ones). `main`, the man page and the completions all use it.
pub fn command() -> clap::Command {
    fn document_exit_codes(command: clap::Command) -> clap::Command {
        if command.get_subcommands().next().is_some() {
            return command.mut_subcommands(document_exit_codes);
        }
        match command.get_after_help().map(ToString::to_string) {
            Some(help) if help.contains("Exit codes") => command,
            Some(help) => command.after_help(format!("{help}\n\n{COMMON_EXIT_CODES}")),
            None => command.after_help(COMMON_EXIT_CODES),
        }
    }
    document_exit_codes(<Cli as clap::CommandFactory>::command())
}

/// Parses the process's arguments with [`command`]; a usage error exits with 2.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
        .unwrap_or_else(|e| e.format(&mut command()).exit())
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    // The client runs on a recipient's machine: it needs none of the server's settings.
    let cli = match cli.command {
        Command::Completions { shell } => {
            let mut command = command();
            clap_complete::generate(shell, &mut command, "steward", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man => return man_page(),
        Command::Client(command) => return client::run(command),
        Command::Verify(command) => return verify::run(command),
        command => Cli { command, ..cli },
    };
    let settings = match Settings::load(cli.config.as_deref()) {
        // The demo's terminal is for its instructions: only warnings, unless asked otherwise.
        Ok(mut settings) if matches!(cli.command, Command::Demo { .. }) => {
            if std::env::var_os("STEWARD_LOG__FILTER").is_none() {
                settings.log.filter = "warn".into();
            }
            settings
        }
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Command::Config(ConfigCommand::Check) => return config_check(&settings),
        Command::Synth { out, rows, seed } => {
            return report(policy::synth(out, *rows, *seed));
        }
        Command::Keys(KeysCommand::Init { dir }) => {
            return report(crate::app::init_keys(dir, Arc::new(SystemClock)));
        }
        Command::Audit(audit::AuditCommand::VerifyProof {
            key,
            proof,
            checkpoint,
        }) => return audit::verify_proof(key, proof, checkpoint.as_deref()),
        _ => {}
    }
    if let Err(error) = crate::telemetry::init(&settings.log, std::io::stderr) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve => report(serve(settings).await),
            Command::Demo { dir } => report(run_demo(cli.config.as_deref(), &dir).await),
            Command::Migrate { grant_to } => report(migrate(settings, grant_to).await),
            Command::Optout(OptoutCommand::Import { file }) => {
                report(policy::optout_import(&settings, Arc::new(SystemClock), &file).await)
            }
            Command::Admin(command) => report(admin::run(&settings, command).await),
            Command::Release(command) => report(release::run(&settings, command).await),
            Command::Jobs(command) => report(jobs::run(&settings, command).await),
            Command::Audit(command) => audit::run(&settings, command).await,
            Command::Revoke(command) => report(revoke::run(&settings, command).await),
            Command::Worker => report(worker::run(settings).await),
            // Handled above, before the runtime starts.
            Command::Config(_)
            | Command::Synth { .. }
            | Command::Keys(_)
            | Command::Client(_)
            | Command::Verify(_)
            | Command::Completions { .. }
            | Command::Man => ExitCode::SUCCESS,
        }
    })
}

/// `steward config check`: everything `serve` would refuse, refused here too, before anything
/// is created: the settings, the policy (catalog, schemas, code lists) and each path source.
fn config_check(settings: &Settings) -> ExitCode {
    let checked = crate::app::load_policy(settings)
        .and_then(|policy| crate::app::check_sources(settings, &policy, None))
        .and_then(|unchecked| {
            settings.check_policy_secrets()?;
            Ok(unchecked)
        });
    match checked {
        Ok(unchecked) => {
            print!("{}", settings.to_redacted_toml());
            for dataset in unchecked {
                eprintln!(
                    "note: extract.sources.{}: an object in the store, checked when serve or worker starts",
                    dataset.as_str()
                );
            }
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// `steward man`: the manual page of every command, from the clap definitions.
fn man_page() -> ExitCode {
    let command = command();
    let mut out = Vec::new();
    let rendered = clap_mangen::Man::new(command.clone())
        .render(&mut out)
        .and_then(|()| {
            // Each subcommand's own page follows, so the one page documents everything.
            for sub in command.get_subcommands() {
                clap_mangen::Man::new(sub.clone())
                    .title(format!("steward-{}", sub.get_name()))
                    .render(&mut out)?;
            }
            Ok(())
        });
    match rendered.and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints an error the way every command does and turns it into the exit code.
fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_demo(
    config: Option<&std::path::Path>,
    dir: &std::path::Path,
) -> Result<(), demo::DemoError> {
    let shutdown = shutdown_signal().map_err(StartupError::Signal)?;
    demo::run(config, dir, shutdown).await
}

/// Starts the metrics listener when `[metrics] listen` is set.
pub(crate) fn start_metrics(settings: &Settings) -> Result<(), String> {
    match settings.metrics.listen {
        Some(addr) => {
            crate::metrics::install(addr).map_err(|e| e.to_string())?;
            // Logged, not printed: the banner on standard output is what scripts read.
            tracing::info!(%addr, "metrics on http://{addr}/metrics");
            Ok(())
        }
        None => Ok(()),
    }
}

async fn serve(settings: Settings) -> Result<(), StartupError> {
    start_metrics(&settings).map_err(StartupError::Metrics)?;
    let app = Application::build(settings, Arc::new(SystemClock)).await?;
    let shutdown = shutdown_signal().map_err(StartupError::Signal)?;
    println!("Steward is listening on {}", app.url());
    if let Some(ca) = app.local_ca() {
        println!("CA certificate: {}", ca.cert_path.display());
        println!("CA SHA-256 fingerprint: {}", ca.fingerprint);
        println!(
            "Try: curl --cacert {} {}/readyz",
            ca.cert_path.display(),
            app.url()
        );
    }
    app.run_until_stopped(shutdown).await
}

async fn migrate(settings: Settings, grant_to: Option<String>) -> Result<(), StartupError> {
    let db = connect_database(&settings).await?;
    let report = db.migrate().await?;
    if let Some(role) = grant_to {
        db.grant_runtime_role(&role).await?;
        println!("granted {role} the runtime privileges (access log: SELECT and INSERT only)");
    }
    if report.from == report.to {
        println!("database schema is up to date (version {})", report.to);
    } else {
        println!(
            "database schema migrated from version {} to {}",
            report.from, report.to
        );
    }
    db.close().await;
    Ok(())
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    use super::Cli;

    fn leaves(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        let subs: Vec<_> = command.get_subcommands().collect();
        if subs.is_empty() {
            out.push((path.clone(), command.clone()));
        }
        for sub in subs {
            leaves(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    /// The leaf commands of `command` whose help lacks `text`.
    fn leaves_without(command: &clap::Command, text: &str) -> Vec<String> {
        let mut all = Vec::new();
        leaves(command, "steward".into(), &mut all);
        all.into_iter()
            .filter(|(_, c)| {
                !c.get_after_help()
                    .is_some_and(|h| h.to_string().contains(text))
            })
            .map(|(p, _)| p)
            .collect()
    }

    #[test]
    fn every_leaf_command_shows_its_exit_codes() {
        let command = super::command();
        let missing = leaves_without(&command, "Exit codes:");
        assert!(missing.is_empty(), "no exit codes in --help: {missing:?}");
        // A command with its own codes keeps them, and only them.
        let demo = command.find_subcommand("demo").unwrap();
        let help = demo.get_after_help().unwrap().to_string();
        assert_eq!(help.matches("Exit codes").count(), 1, "{help}");
        command.debug_assert();
    }

    #[test]
    fn every_list_and_show_command_prints_json_when_asked() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "steward".into(), &mut all);
        let lists_or_shows = ["list", "show", "releases", "destruction", "key"];
        let without: Vec<&str> = all
            .iter()
            .filter(|(_, c)| lists_or_shows.contains(&c.get_name()))
            .filter(|(_, c)| !c.get_arguments().any(|a| a.get_id() == "json"))
            .map(|(p, _)| p.as_str())
            .collect();
        assert!(without.is_empty(), "no --json: {without:?}");
    }

    #[test]
    fn every_leaf_command_shows_an_example() {
        let missing = leaves_without(&Cli::command(), "Example");
        assert!(missing.is_empty(), "no example in --help: {missing:?}");
    }
}
