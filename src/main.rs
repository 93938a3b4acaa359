use std::process::ExitCode;

fn main() -> ExitCode {
    steward::cli::run(steward::cli::parse())
}
