//! `steward synth` and `steward optout import` as a user runs them.

use std::process::Command;

use sqlx::{Connection, Row};

fn steward(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command
        .env("STEWARD_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn");
    command
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.output().expect("steward runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn optout_import_stores_only_hashes_and_logs_counts() {
    let dir = tempfile::tempdir().unwrap();
    let synth_dir = dir.path().join("synth");
    let (ok, stdout, stderr) = run(steward(dir.path())
        .args(["synth", "--rows", "2000", "--seed", "3", "--out"])
        .arg(&synth_dir));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("med_claim.csv"), "{stdout}");
    let optout_csv = std::fs::read_to_string(synth_dir.join("optout.csv")).unwrap();
    let values: Vec<String> = optout_csv
        .lines()
        .skip(1)
        .flat_map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .collect();
    assert!(!values.is_empty(), "synth lists opted-out members");

    let (ok, _, stderr) = run(steward(dir.path()).arg("migrate"));
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(steward(dir.path())
        .args(["optout", "import"])
        .arg(synth_dir.join("optout.csv")));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("new"), "{stdout}");
    // Importing the same file again adds nothing.
    let (ok, stdout, _) = run(steward(dir.path())
        .args(["optout", "import"])
        .arg(synth_dir.join("optout.csv")));
    assert!(ok);
    assert!(stdout.contains("(0 new)"), "{stdout}");

    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", dir.path().join("steward.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let stored: Vec<String> = sqlx::query("SELECT key_hash FROM optout_keys")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("key_hash"))
        .collect();
    assert!(!stored.is_empty());
    let log: Vec<(String, String)> =
        sqlx::query("SELECT action, target_id AS target FROM access_events ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let target: Option<String> = r.get("target");
                (r.get("action"), target.unwrap_or_default())
            })
            .collect();
    assert_eq!(
        log.iter().filter(|(a, _)| a == "optout_imported").count(),
        2,
        "{log:?}"
    );
    for value in &values {
        assert!(
            stored.iter().all(|h| !h.contains(value.as_str())),
            "raw value stored"
        );
        assert!(
            log.iter().all(|(_, t)| !t.contains(value.as_str())),
            "raw value logged"
        );
    }
    // The database file itself holds no raw value.
    let bytes = std::fs::read(dir.path().join("steward.db")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for value in values.iter().filter(|v| v.len() >= 6) {
        assert!(
            !text.contains(value.as_str()),
            "raw value {value} in the database file"
        );
    }
}

#[test]
fn malformed_optout_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(steward(dir.path()).arg("migrate"));
    assert!(ok, "{stderr}");
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, "ssn\n123456789\n12345\n").unwrap();
    let (ok, _, stderr) = run(steward(dir.path()).args(["optout", "import"]).arg(&file));
    assert!(!ok);
    assert!(
        stderr.contains("line 3") && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    assert!(!stderr.contains("12345"), "values are not echoed: {stderr}");
}
