//! `steward demo` as a newcomer runs it: in a fresh directory, in the background; the test
//! reads `demo.json`, runs the printed `steward client fetch` command, and checks the
//! decrypted Level I extract against the policy (exactly the approved, de-identified columns).
//! A second run with the same directory serves what the first made.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The demo running in the background, and what it printed so far.
struct Demo {
    child: Child,
    printed: Receiver<String>,
    lines: Vec<String>,
}

fn start(dir: &Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["demo", "--dir"])
        .arg(dir)
        // Any free port: tests run side by side.
        .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, printed) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    Demo {
        child,
        printed,
        lines: Vec::new(),
    }
}

impl Demo {
    /// Waits until the demo prints its closing line (setup done, serving); returns all it
    /// printed.
    fn ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.printed.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("Ctrl-C stops the server");
                    self.lines.push(line);
                    if done {
                        return self.lines.join("\n");
                    }
                }
                Err(e) => panic!(
                    "the demo did not finish setting up ({e}): {:?}; exited: {:?}",
                    self.lines,
                    self.child.try_wait()
                ),
            }
        }
    }

    /// SIGTERM, as Ctrl-C would stop it; it must exit cleanly.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

#[test]
fn the_demo_sets_up_everything_and_its_printed_fetch_decrypts_the_level_one_extract() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let mut demo = start(&demo_dir);
    let printed = demo.ready();
    let facts: Value =
        serde_json::from_slice(&std::fs::read(demo_dir.join("demo.json")).unwrap()).unwrap();
    let roles: Vec<&str> = facts["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["role"].as_str().unwrap())
        .collect();
    for role in [
        "recipient",
        "privacy_officer",
        "executive_director",
        "it_staff",
        "admin",
    ] {
        assert!(roles.contains(&role), "{role} in {roles:?}");
    }
    for user in facts["users"].as_array().unwrap() {
        assert!(user["api_token"].as_str().unwrap().starts_with("stw_"));
        assert_eq!(user["totp_secret"].as_str().unwrap().len(), 32);
    }

    // The printed command, as a shell would run it (the binary in place of `steward`).
    let command = facts["fetch_command"].as_str().unwrap();
    let mut words = command.split_whitespace();
    assert!(words.next().unwrap().ends_with("steward"));
    succeeded(Command::new(env!("CARGO_BIN_EXE_steward")).args(words));
    let extract = Path::new(facts["extract_dir"].as_str().unwrap());
    let mut reader = csv::Reader::from_path(extract.join("med_elig.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["year", "member_gender", "member_state"],
        "exactly the approved Level I elements"
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(!rows.is_empty());
    for row in &rows {
        let year: i32 = row[0].parse().unwrap();
        assert!((2020..=2023).contains(&year), "inside the request's years");
    }
    assert!(extract.join("approval_letter.pdf").exists());
    assert!(extract.join("data_dictionary.csv").exists());
    assert!(printed.contains(command), "the fetch command is printed");
    assert!(printed.contains("TOTP secret"));
    // The shell commands, pointed at the demo's data directory as printed, work beside it.
    assert!(printed.contains(&format!(
        "STEWARD_DATA_DIR={}",
        demo_dir.canonicalize().unwrap().display()
    )));
    succeeded(
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["audit", "verify"])
            .env("STEWARD_DATA_DIR", &demo_dir),
    );

    // The README's worked example, run as written against the demo: request to decrypted
    // file with curl, jq, age and zstd, each step as its role.
    let tools = ["curl", "jq", "age", "zstd"];
    if tools
        .iter()
        .all(|t| steward::pdf::tests_support::tool_available(t))
    {
        let work = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/worked-example.sh");
        succeeded(
            Command::new("bash")
                .arg(script)
                .arg(&demo_dir)
                .current_dir(work.path()),
        );
        let mut reader = csv::Reader::from_path(work.path().join("med_elig.csv")).unwrap();
        assert_eq!(reader.headers().unwrap(), vec!["year", "member_gender"]);
        assert!(reader.records().count() > 0);

        // The README's own curl and age lines for the Level I extract, run as written from a
        // directory where `steward-demo` is the demo.
        let snippet = readme_block_starting("D=steward-demo");
        let work = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&demo_dir, work.path().join("steward-demo")).unwrap();
        succeeded(
            Command::new("bash")
                .args(["-euo", "pipefail", "-c", &snippet])
                .current_dir(work.path()),
        );
        let mut reader = csv::Reader::from_path(work.path().join("med_elig.csv")).unwrap();
        assert_eq!(
            reader.headers().unwrap(),
            vec!["year", "member_gender", "member_state"]
        );
        assert!(reader.records().count() > 0);
    }
    demo.stop();

    // Run again: it serves what it made, without setting anything up again. It listens on
    // another port now, and the facts and the recipient's client follow it: the same printed
    // command fetches again (the files already there are checked against the server's list).
    let mut again = start(&demo_dir);
    let printed = again.ready();
    assert!(printed.contains(command), "{printed}");
    assert!(!printed.contains("Writing synthetic sources"));
    let refreshed: Value =
        serde_json::from_slice(&std::fs::read(demo_dir.join("demo.json")).unwrap()).unwrap();
    assert!(
        printed.contains(refreshed["url"].as_str().unwrap()),
        "demo.json names the address served now: {printed}"
    );
    let client: Value = serde_json::from_slice(
        &std::fs::read(demo_dir.join("client").join("client.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(client["server"], refreshed["url"]);
    let fetched = succeeded(
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(command.split_whitespace().skip(1))
            .arg("--json"),
    );
    let summary: Value = serde_json::from_slice(&fetched.stdout).unwrap();
    assert_eq!(summary["verified"], true);
    let data = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "med_elig.csv.zst.age")
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(
        data["plaintext"].as_str().map(Path::new),
        Some(extract.join("med_elig.csv").as_path())
    );
    again.stop();
}

/// Runs `command`, failing the test with its output unless it succeeds.
fn succeeded(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The shell block of the README whose first line starts with `first`.
fn readme_block_starting(first: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find(&format!("```sh\n{first}"))
        .unwrap_or_else(|| panic!("no README block starting with {first}"))
        + "```sh\n".len();
    let length = readme[start..].find("\n```").expect("the block ends");
    readme[start..start + length].to_owned()
}

/// The README shows the worked example exactly as the test runs it.
#[test]
fn the_readme_shows_the_worked_example_the_test_runs() {
    let readme = include_str!("../../README.md");
    let script = include_str!("../../docs/worked-example.sh");
    assert!(
        readme.contains(script),
        "README.md must include docs/worked-example.sh verbatim"
    );
}
