//! Golden tests: for each file type and level, a small input (with a member aged 90+, an HIV
//! row of an opted-out member, an abortion row) and its hand-checked expected output under
//! `tests/golden/<file_type>/<level>/`. Set `STEWARD_BLESS=1` to rewrite the expected files
//! after a deliberate change, then review the diff by hand.

use steward::domain::level::Level;
use steward::policy::catalog::FileType;

use crate::policy_support::{catalog, everything_allowed, opt_outs, transform_csv};

/// The SSN of the opted-out member in the golden inputs.
const OPTED_OUT_SSN: &str = "123-45-6789";

#[test]
fn golden_outputs_match() {
    let catalog = catalog();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("STEWARD_BLESS").is_some();
    let mut failures = Vec::new();
    for ft in FileType::ALL {
        for level in Level::ALL {
            let dir = root.join(ft.as_str()).join(level.as_str());
            let input = std::fs::read(dir.join("input.csv"))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let release = everything_allowed(&catalog, ft, level, "org-golden");
            let got = transform_csv(&catalog, ft, &release, &opt_outs(&[OPTED_OUT_SSN]), &input);
            let expected_path = dir.join("expected.csv");
            if bless {
                std::fs::write(&expected_path, &got).expect("bless");
                continue;
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != expected {
                failures.push(format!(
                    "{ft}/{level}:\n--- expected\n{expected}\n--- got\n{got}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
