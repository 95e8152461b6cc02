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

/// CPU time (user + system) this process has used so far, in milliseconds
/// (`None` where /proc is absent).
pub fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10.0)
}
