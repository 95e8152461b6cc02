//! `cargo xtask fuzz [--duration S] [--seed N] [TARGET]`: runs the
//! floe-fuzz targets (all, splitting the time evenly, or one), prints a
//! table of executions per target, and saves every failing input under
//! `target/fuzz/crashes/<target>-<hash>.bin` (its hex, message and
//! backtrace printed too). Exits non-zero on any failure.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use floe_fuzz::{Crash, FuzzConfig, Report, TARGETS};

/// Each target runs on a thread with the stack of a tokio worker (2 MiB),
/// where the node runs these parsers, so deep recursion shows as it would.
const STACK: usize = 2 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn save(crash: &Crash) -> Result<std::path::PathBuf> {
    let dir = crate::bench::target_dir().join("fuzz").join("crashes");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let hash = blake3::hash(&crash.input).to_hex();
    let path = dir.join(format!("{}-{}.bin", crash.target, &hash[..16]));
    std::fs::write(&path, &crash.input).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs the fuzz targets.
pub fn run(target: Option<&str>, duration: u64, seed: u64) -> Result<()> {
    let targets: Vec<_> = match target {
        Some(name) => match floe_fuzz::target(name) {
            Some(target) => vec![target],
            None => bail!(
                "no fuzz target {name:?}; the targets are: {}",
                TARGETS
                    .iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
        None => TARGETS.iter().collect(),
    };
    if !floe_fuzz::counting_installed() {
        bail!("the counting allocator is not installed: allocation bounds cannot be checked");
    }
    let per_target = Duration::from_secs_f64(duration as f64 / targets.len() as f64);
    println!(
        "fuzzing {} target(s), {:.1} s each, seed {seed}",
        targets.len(),
        per_target.as_secs_f64()
    );
    let mut reports: Vec<Report> = Vec::new();
    for target in targets {
        let config = FuzzConfig {
            duration: per_target,
            max_execs: None,
            seed,
        };
        let report = std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .stack_size(STACK)
            .spawn(move || floe_fuzz::fuzz(target, &config))
            .context("spawning a fuzz thread")?
            .join()
            .map_err(|_| anyhow::anyhow!("the fuzz loop of {} itself panicked", target.name))?;
        println!(
            "  {:<20} {:>9} execs {:>9.0}/s  {} failure(s)",
            report.target,
            report.execs,
            report.execs_per_sec(),
            report.failures
        );
        reports.push(report);
    }
    println!();
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>7} {:>10} {:>11} {:>9} {:>8}",
        "target",
        "execs",
        "exec/s",
        "accepted",
        "corpus",
        "peak KiB",
        "(input B)",
        "slowest",
        "crashes"
    );
    let mut failures = 0;
    for report in &reports {
        println!(
            "{:<20} {:>10} {:>9.0} {:>9} {:>7} {:>10.1} {:>11} {:>7.1}ms {:>8}",
            report.target,
            report.execs,
            report.execs_per_sec(),
            report.accepted,
            report.corpus,
            report.peak_bytes as f64 / 1024.0,
            report.peak_input,
            report.slowest.as_secs_f64() * 1e3,
            report.failures
        );
        failures += report.failures;
    }
    let total: u64 = reports.iter().map(|r| r.execs).sum();
    println!("{:<20} {:>10}", "total", total);
    for report in &reports {
        for crash in &report.crashes {
            let path = save(crash)?;
            println!();
            println!("{} {:?}: {}", crash.target, crash.kind, crash.message);
            println!(
                "  input ({} bytes): {}",
                crash.input.len(),
                hex(&crash.input)
            );
            println!("  saved to {}", path.display());
            if !crash.backtrace.is_empty() {
                println!("{}", crash.backtrace);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} failing execution(s)");
    }
    println!("0 crashes, 0 panics");
    Ok(())
}
