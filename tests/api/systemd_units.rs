//! The systemd units in `infra/` (server and worker) pass `systemd-analyze verify`, with the
//! binary they name replaced by the one under test, and keep their hardening.

use steward::pdf::tests_support::tool_available;

#[test]
fn the_units_verify_and_are_hardened() {
    let infra = concat!(env!("CARGO_MANIFEST_DIR"), "/infra");
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for unit in ["steward.service", "steward-worker.service"] {
        let text = std::fs::read_to_string(format!("{infra}/{unit}")).unwrap();
        for line in [
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "User=steward",
            "LoadCredential=master.age:",
            "CapabilityBoundingSet=",
        ] {
            assert!(text.contains(line), "{unit} lacks {line}");
        }
        assert!(
            !text.contains("/run/secrets"),
            "{unit}: secrets come through LoadCredential"
        );
        let path = dir.path().join(unit);
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/steward", env!("CARGO_BIN_EXE_steward")),
        )
        .unwrap();
        paths.push(path);
    }
    if !tool_available("systemd-analyze") {
        return;
    }
    let verified = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
