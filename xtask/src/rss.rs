//! Peak resident memory of this process (Linux), resettable between cases.

/// Resets the peak-RSS watermark (`VmHWM`) to the current RSS.
pub fn reset_peak() {
    // Writing "5" to clear_refs resets VmHWM (Linux ≥ 4.0); elsewhere the
    // figure is simply the process-lifetime peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS since the last reset, in MiB (`None` where /proc is absent).
pub fn peak_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Current RSS, in MiB.
pub fn current_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system, all threads) this process has used so far, in
/// milliseconds, to the microsecond (`None` if the clock is unavailable).
pub fn cpu_ms() -> Option<f64> {
    use nix::time::{clock_gettime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(now.tv_sec() as f64 * 1e3 + now.tv_nsec() as f64 / 1e6)
}
