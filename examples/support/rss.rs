//! The benchmarks' memory figure: this process's peak resident set, in KiB (Linux; 0
//! elsewhere).

/// `VmHWM` from `/proc/self/status`.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
