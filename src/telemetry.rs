//! Tracing set-up: human lines by default, JSON by configuration.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber writing to `writer`. `RUST_LOG`, when set, overrides the
/// configured filter. Fails if a subscriber is already installed or the filter is invalid.
pub fn init<W>(settings: &LogSettings, writer: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&settings.filter),
    }
    .map_err(|e| format!("invalid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    }
    .map_err(|e| e.to_string())
}
