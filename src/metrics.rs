//! Prometheus metrics, off by default: with `[metrics] listen` set, `serve` and `worker` expose
//! `/metrics` on that separate address (keep it off the public interface). Names and labels
//! carry route templates, states and kinds, never ids, paths with tokens or data.
//!
//! - `steward_http_requests_total{route, status}`
//! - `steward_download_bytes_total`, `steward_download_streams_active`
//! - `steward_jobs_finished_total{kind, state}`, `steward_job_duration_seconds{kind}`
//! - `steward_access_log_append_lag_seconds`: from an event handed to the log on its own (a
//!   read, a download, a refusal) to its durable commit; an event that accompanies a change
//!   commits with that change's transaction instead
//! - `steward_access_log_integration_lag_seconds`: from an event's time to its position in the
//!   hash chain and the Merkle tree

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics listener on {addr}: {message}")]
pub struct MetricsError {
    addr: SocketAddr,
    message: String,
}

/// Installs the recorder and its listener; call once, inside the runtime.
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| MetricsError {
            addr,
            message: e.to_string(),
        })
}

/// Counts one answered request.
pub fn request(route: &str, status: u16) {
    metrics::counter!(
        "steward_http_requests_total",
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
}

/// Counts ciphertext bytes handed to a download's connection.
pub fn download_bytes(n: u64) {
    metrics::counter!("steward_download_bytes_total").increment(n);
}

/// A download stream started (`+1`) or ended (`-1`).
pub fn download_stream(delta: f64) {
    metrics::gauge!("steward_download_streams_active").increment(delta);
}

/// A job ended in `state` after `seconds`.
pub fn job_finished(kind: &'static str, state: &'static str, seconds: f64) {
    metrics::counter!("steward_jobs_finished_total", "kind" => kind, "state" => state).increment(1);
    metrics::histogram!("steward_job_duration_seconds", "kind" => kind).record(seconds);
}

/// An access event appended on its own took `seconds` to commit.
pub fn access_log_append_lag(seconds: f64) {
    metrics::histogram!("steward_access_log_append_lag_seconds").record(seconds);
}

/// An access event took `seconds` from its time to its position in the log.
pub fn access_log_integration_lag(seconds: f64) {
    metrics::histogram!("steward_access_log_integration_lag_seconds").record(seconds.max(0.0));
}
