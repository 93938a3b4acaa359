//! `steward release ...` against a running Steward's database: the same service as the API.

use std::process::Command;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;
use crate::release_support::{executed_level_one, people};

on_both_databases!(release_commands_list_show_letter_and_expire);

/// Runs `steward ARGS` against the app's data directory and database: (success, stdout, stderr).
pub fn run(app: &crate::helpers::TestApp, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    let output = command
        .env("RUST_LOG", "warn")
        .env("STEWARD_DATA_DIR", &app.state.settings.data_dir)
        .env("STEWARD_DATABASE__URL", app.state.settings.database_url())
        .args(args)
        .output()
        .expect("steward runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn release_commands_list_show_letter_and_expire(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0200").await;

    let (ok, out, err) = run(&app, &["release", "list", "--state", "dua_executed"]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("DUA-2026-0200"), "{out}");
    let (ok, out, _) = run(&app, &["release", "list", "--level", "III"]);
    assert!(ok);
    assert!(!out.contains(&id), "{out}");

    let (ok, out, err) = run(&app, &["release", "show", &id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("dua_executed") && out.contains("execute_dua"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("letter.pdf");
    let (ok, out, err) = run(
        &app,
        &["release", "letter", &id, "--out", file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains(&app.state.signer.public_hex()), "{out}");
    let pdf = std::fs::read(&file).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));

    let (ok, out, err) = run(&app, &["release", "expire"]);
    assert!(ok, "{err}");
    assert!(out.contains("release(s) expired"), "{out}");

    let (ok, _, err) = run(&app, &["release", "show", "not-a-uuid"]);
    assert!(!ok);
    assert!(
        err.contains("not-a-uuid") || err.contains("invalid"),
        "{err}"
    );
}
