//! `steward admin ...` on a fresh embedded install, as the README shows it.

use std::process::Command;

fn steward(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command
        .env("RUST_LOG", "warn")
        .env("STEWARD_DATA_DIR", data_dir);
    command
}

fn run(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = steward(data_dir).args(args).output().expect("steward runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bootstrap_once_then_manage_users() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(
        dir.path(),
        &[
            "admin",
            "bootstrap",
            "--username",
            "root",
            "--org",
            "Agency",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("one-time password:"), "{out}");
    assert!(out.contains("otpauth://totp/steward:root?secret="), "{out}");
    // The password and codes are printed, never logged.
    let password = out
        .lines()
        .find_map(|l| l.strip_prefix("one-time password:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(!err.contains(&password));
    // The keyring exists now, readable by its owner only.
    let keys = dir.path().join("keys/jwt");
    for entry in std::fs::read_dir(&keys).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second bootstrap is refused.
    let (ok, _, err) = run(dir.path(), &["admin", "bootstrap"]);
    assert!(!ok);
    assert!(err.contains("an admin exists already"), "{err}");
    // Organizations and users.
    let (ok, _, err) = run(dir.path(), &["admin", "org", "add", "University"]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(dir.path(), &["admin", "org", "list"]);
    assert!(
        ok && out.contains("University") && out.contains("Agency"),
        "{out}"
    );
    let (ok, out, err) = run(
        dir.path(),
        &[
            "admin",
            "user",
            "add",
            "--username",
            "jdoe",
            "--org",
            "University",
            "--role",
            "recipient",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("otpauth://"));
    let (ok, _, err) = run(
        dir.path(),
        &[
            "admin",
            "user",
            "roles",
            "jdoe",
            "--role",
            "recipient",
            "--role",
            "it_staff",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(dir.path(), &["admin", "user", "disable", "jdoe"]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(dir.path(), &["admin", "user", "list"]);
    assert!(ok);
    let line = out.lines().find(|l| l.contains("jdoe")).unwrap();
    assert!(
        line.contains("disabled") && line.contains("recipient,it_staff"),
        "{line}"
    );
    let (ok, out, _) = run(dir.path(), &["admin", "user", "list", "--json"]);
    assert!(ok);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    let jdoe = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "jdoe")
        .unwrap();
    assert_eq!(jdoe["disabled"], true);
    assert_eq!(jdoe["roles"], serde_json::json!(["recipient", "it_staff"]));
    assert!(!out.contains("argon2"), "no password hash in the list");
    // Bad input names the problem.
    let (ok, _, err) = run(
        dir.path(),
        &[
            "admin",
            "user",
            "add",
            "--username",
            "x",
            "--org",
            "Nowhere",
            "--role",
            "admin",
        ],
    );
    assert!(!ok && err.contains("no such organization"), "{err}");
    let (ok, _, err) = run(
        dir.path(),
        &[
            "admin",
            "user",
            "add",
            "--username",
            "x",
            "--org",
            "Agency",
            "--role",
            "boss",
        ],
    );
    assert!(!ok && err.contains("unknown role `boss`"), "{err}");
}
