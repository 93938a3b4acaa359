use std::os::unix::fs::PermissionsExt;

use steward::config::{ConfigError, Settings};

fn write(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "steward.toml",
        "[database]\nurll = \"sqlite://x.db\"\n",
        0o600,
    );
    let err = Settings::load_from(Some(&file), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("urll"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn wrong_type_names_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "steward.toml",
        "[server]\nrequest_timeout_secs = \"soon\"\n",
        0o600,
    );
    let err = Settings::load_from(Some(&file), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("request_timeout_secs"), "{err}");
}

#[test]
fn missing_config_file_is_an_error() {
    let err = Settings::load_from(
        Some(std::path::Path::new("/nonexistent/steward.toml")),
        Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
}

#[test]
fn file_then_environment_override_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "steward.toml",
        "[server]\nrequest_timeout_secs = 7\nshutdown_grace_secs = 9\n",
        0o600,
    );
    let env = vec![(
        "STEWARD_SERVER__SHUTDOWN_GRACE_SECS".to_owned(),
        "11".to_owned(),
    )];
    let s = Settings::load_from(Some(&file), env).unwrap();
    assert_eq!(s.server.request_timeout_secs, 7);
    assert_eq!(s.server.shutdown_grace_secs, 11);
    assert_eq!(s.server.request_body_limit_bytes, 1_048_576, "default kept");
}

fn s3_config(secret_lines: &str) -> String {
    format!(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nregion = \"us-east-1\"\naccess_key_id = \"AK\"\n{secret_lines}"
    )
}

#[test]
fn secret_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "secret", "s3cr3t\n", 0o600);
    let text = s3_config(&format!(
        "secret_access_key = \"inline\"\nsecret_access_key_file = \"{}\"\n",
        secret.display()
    ));
    let file = write(dir.path(), "steward.toml", &text, 0o600);
    let err = Settings::load_from(Some(&file), Vec::new()).unwrap_err();
    assert!(matches!(err, ConfigError::SecretTwice { .. }), "{err}");
}

#[test]
fn secret_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "secret", "s3cr3t\n", 0o644);
    let text = s3_config(&format!(
        "secret_access_key_file = \"{}\"\n",
        secret.display()
    ));
    let file = write(dir.path(), "steward.toml", &text, 0o600);
    let settings = Settings::load_from(Some(&file), Vec::new()).unwrap();
    let err = settings
        .storage
        .s3
        .as_ref()
        .unwrap()
        .secret_access_key()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::SecretFileExposed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let value = settings
        .storage
        .s3
        .as_ref()
        .unwrap()
        .secret_access_key()
        .unwrap()
        .unwrap();
    assert_eq!(
        secrecy::ExposeSecret::expose_secret(&value),
        "s3cr3t",
        "trailing newline trimmed"
    );
}

#[test]
fn unreadable_secret_file_is_named() {
    let text = s3_config("secret_access_key_file = \"/nonexistent/secret\"\n");
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "steward.toml", &text, 0o600);
    let settings = Settings::load_from(Some(&file), Vec::new()).unwrap();
    let err = settings
        .storage
        .s3
        .as_ref()
        .unwrap()
        .secret_access_key()
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/secret"), "{err}");
}

#[test]
fn redacted_rendering_hides_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[database]\nurl = \"postgres://steward:dbpass@db/steward\"\n",
        s3_config("secret_access_key = \"topsecret\"\n")
    );
    let file = write(dir.path(), "steward.toml", &text, 0o600);
    let rendered = Settings::load_from(Some(&file), Vec::new())
        .unwrap()
        .to_redacted_toml();
    assert!(!rendered.contains("topsecret"), "{rendered}");
    assert!(!rendered.contains("dbpass"), "{rendered}");
    assert!(rendered.contains("[redacted]"), "{rendered}");
    let debug = format!(
        "{:?}",
        Settings::load_from(Some(&file), Vec::new()).unwrap()
    );
    assert!(!debug.contains("topsecret"), "Debug must not print secrets");
    assert!(
        !debug.contains("dbpass"),
        "Debug must not print the database password"
    );
}

#[test]
fn shipped_configuration_files_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    Settings::load_from(Some(&root.join("config/default.toml")), Vec::new()).unwrap();
    Settings::load_from(
        Some(&root.join("config/production.example.toml")),
        Vec::new(),
    )
    .unwrap();
}

#[test]
fn s3_backend_needs_its_table_and_bucket() {
    let env = vec![("STEWARD_STORAGE__BACKEND".to_owned(), "s3".to_owned())];
    let err = Settings::load_from(None, env).unwrap_err().to_string();
    assert!(err.contains("storage.s3"), "{err}");
}

/// Issue 12, finding 9: a configured master-key path that does not exist made a new master key
/// (which unwraps no release) and chmodded the existing parent directory to 0700.
#[tokio::test]
async fn a_configured_master_key_that_is_missing_is_refused_and_nothing_is_touched() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("etc");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let master = shared.join("master.age");
    let settings = crate::helpers::test_settings(
        &dir.path().join("data"),
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &[(
            "STEWARD_KEYS__MASTER_IDENTITY_FILE".into(),
            master.display().to_string(),
        )],
    );
    let err = steward::app::build_state(settings, std::sync::Arc::new(steward::clock::SystemClock))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("does not exist") && text.contains("master.age"),
        "{text}"
    );
    assert!(!master.exists(), "no key was made");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "the parent directory was left as it was");
}

/// Issue 12, finding 10: a SQLite file outside the data directory was created 0644.
#[tokio::test]
async fn a_sqlite_file_anywhere_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("elsewhere").join("steward.db");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let settings = crate::helpers::test_settings(
        &dir.path().join("data"),
        &format!("sqlite://{}", file.display()),
        &[],
    );
    steward::app::build_state(settings, std::sync::Arc::new(steward::clock::SystemClock))
        .await
        .unwrap();
    for path in [file.clone(), file.with_extension("db-wal")] {
        if path.exists() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }
    assert!(file.exists());
}

/// Issue 12, finding 12: bad linkage and opt-out secret files passed start-up (and failed the
/// first Level III extract instead).
#[tokio::test]
async fn bad_policy_secrets_are_refused_at_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "too-short").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let exposed = dir.path().join("exposed.secret");
    std::fs::write(&exposed, "x".repeat(40)).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = dir.path().join("missing.secret");
    for (key, path, expect) in [
        (
            "STEWARD_POLICY__LINKAGE_SECRET_FILE",
            &short,
            "at least 32 bytes",
        ),
        (
            "STEWARD_POLICY__OPTOUT_SECRET_FILE",
            &exposed,
            "readable by group or others",
        ),
        (
            "STEWARD_POLICY__OPTOUT_SECRET_FILE",
            &missing,
            "cannot read secret file",
        ),
    ] {
        let data = dir.path().join("data");
        let settings = crate::helpers::test_settings(
            &data,
            &format!("sqlite://{}", dir.path().join("s.db").display()),
            &[(key.into(), path.display().to_string())],
        );
        let err =
            steward::app::build_state(settings, std::sync::Arc::new(steward::clock::SystemClock))
                .await
                .unwrap_err()
                .to_string();
        assert!(err.contains(expect), "{key}: {err}");
        assert!(!data.exists(), "nothing created");
    }
}
