//! The policy travels with the binary and is checked before anything starts (issue 10):
//! `steward config check` and `steward serve` work from an empty directory anywhere, and an
//! invalid override or source makes both exit non-zero, having created nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn steward(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0");
    command
}

#[test]
fn config_check_and_serve_work_from_an_empty_directory() {
    let empty = tempfile::tempdir().unwrap();
    let output = steward(empty.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "config check creates nothing"
    );

    let mut child = steward(empty.path())
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut listening = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.starts_with("Steward is listening on") => {
                listening = true;
                break;
            }
            Ok(_) => {}
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
                        .unwrap();
                    panic!("serve exited with {status}: {err}");
                }
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "serve started from an empty directory");
    assert!(empty.path().join("steward-data").is_dir());
}

/// `config check` and `serve` both refuse, naming `expect`, and leave no data directory.
fn refused(cwd: &Path, env: &[(&str, String)], expect: &[&str]) {
    for args in [&["config", "check"][..], &["serve"][..]] {
        let mut command = steward(cwd);
        command.args(args).env("STEWARD_DATA_DIR", cwd.join("data"));
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} accepted: {stderr}");
        for text in expect {
            assert!(
                stderr.contains(text),
                "{args:?}: expected {text:?} in: {stderr}"
            );
        }
        assert!(
            !cwd.join("data").exists(),
            "{args:?} created the data directory"
        );
    }
}

fn shipped_schema(file_type: &str) -> String {
    steward::policy::shipped::DATASETS
        .iter()
        .find(|(label, _)| label.ends_with(&format!("/{file_type}.toml")))
        .map(|(_, text)| (*text).to_owned())
        .unwrap()
}

#[test]
fn invalid_schema_overrides_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("med_claim.toml");
    let shipped = shipped_schema("med_claim");
    let key = "STEWARD_POLICY__DATASET_SCHEMAS__MED_CLAIM";
    let cases: [(&str, String, &[&str]); 4] = [
        (
            "unknown element",
            shipped.replace("\"med_claim.payer_id\"", "\"med_claim.payer_idd\""),
            &["med_claim.toml", "unknown element `med_claim.payer_idd`"],
        ),
        (
            "duplicate column",
            shipped.replace(
                "  { name = \"member_gender\", elements = [\"med_claim.member_gender\"] },",
                "  { name = \"payer_id\", elements = [\"med_claim.member_gender\"] },",
            ),
            &["`payer_id` appears twice"],
        ),
        (
            "element of another file type",
            shipped.replace("\"med_claim.member_state\"", "\"med_elig.member_state\""),
            &["is not a `med_claim` element"],
        ),
        (
            "schema of another file type",
            shipped_schema("med_elig"),
            &["configured as the schema of `med_claim` but describes `med_elig`"],
        ),
    ];
    for (what, text, expect) in cases {
        assert_ne!(text, shipped, "{what}: the case changes the schema");
        std::fs::write(&schema, text).unwrap();
        refused(dir.path(), &[(key, schema.display().to_string())], expect);
    }
    std::fs::remove_file(&schema).unwrap();
    refused(
        dir.path(),
        &[(key, schema.display().to_string())],
        &["cannot read", "med_claim.toml"],
    );
}

#[test]
fn invalid_code_lists_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("hiv.toml");
    let key = "STEWARD_POLICY__CODE_LISTS__HIV";
    let good = "[[category]]\nid = \"hiv\"\neffect = \"blank_direct_identifiers\"\nsource = \"agency list\"\n[category.codes]\ndiagnosis = [\"B20\", \"Z21\"]\n";
    std::fs::write(&list, good).unwrap();
    let ok = steward(dir.path())
        .args(["config", "check"])
        .env(key, &list)
        .env("STEWARD_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    std::fs::write(&list, good.replace("\"B20\"", "\"B20-B2\"")).unwrap();
    refused(
        dir.path(),
        &[(key, list.display().to_string())],
        &["hiv.toml", "B20-B2"],
    );
    std::fs::write(&list, good.replace("id = \"hiv\"", "id = \"other\"")).unwrap();
    refused(
        dir.path(),
        &[(key, list.display().to_string())],
        &["exactly that one category"],
    );
}

#[test]
fn unusable_sources_are_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let key = "STEWARD_EXTRACT__SOURCES__MED_ELIG";
    let missing = dir.path().join("nowhere.csv");
    refused(
        dir.path(),
        &[(key, missing.display().to_string())],
        &["extract.sources.med_elig", "nowhere.csv"],
    );
    let synth = dir.path().join("synth");
    steward::synth::generate(&synth, 50, 1).unwrap();
    let source = synth.join("med_elig.csv");
    let text = std::fs::read_to_string(&source).unwrap();
    let header = text.lines().next().unwrap();
    let renamed = header.replace("member_state", "state_of_member");
    std::fs::write(&source, text.replacen(header, &renamed, 1)).unwrap();
    refused(
        dir.path(),
        &[(key, source.display().to_string())],
        &["extract.sources.med_elig", "no column `member_state`"],
    );
    refused(
        dir.path(),
        &[(
            "STEWARD_EXTRACT__INVALID_ROWS__MED_ELIG__MAX_FRACTION",
            "1.5".into(),
        )],
        &["max_fraction"],
    );
}
