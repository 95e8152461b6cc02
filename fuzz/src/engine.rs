//! The fuzz loop: draw an input from the proptest strategy, run the target
//! on it under `catch_unwind` with allocation counting, keep well-formed
//! mutants as new seeds, and shrink and keep every failure.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::alloc;
use crate::mutate::{self, Input};
use crate::targets::{Outcome, Target};

/// Bytes any execution may hold beyond its target's factor times the
/// input: serde reserves up to 1 MiB for a sequence from its announced
/// length (`size_hint::cautious`), and types nest a few sequences.
pub const ALLOC_SLACK: usize = 4 << 20;

/// Mutants kept as seeds once they are accepted, beyond the built ones.
const POOL_GROWTH: usize = 512;
/// Distinct failures kept per target.
const MAX_KEPT: usize = 16;
/// Shrinking steps per failure.
const SHRINK_STEPS: usize = 512;
/// Executions spent minimizing the bytes of a failure.
const MINIMIZE_STEPS: usize = 4096;

/// How long and how a target is fuzzed.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many executions, if sooner.
    pub max_execs: Option<u64>,
    /// Seed of the random stream (mixed with the target's name).
    pub seed: u64,
}

impl Default for FuzzConfig {
    fn default() -> Self {
        FuzzConfig {
            duration: Duration::from_secs(10),
            max_execs: None,
            seed: 1,
        }
    }
}

/// What kind of failure an input caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrashKind {
    /// The target panicked.
    Panic,
    /// A property failed: a decoded value that re-encodes differently, a
    /// range outside the blob, a seed the target refuses.
    Violation,
    /// The target held more memory than its bound at some point.
    Allocation,
}

/// One failing input.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The target.
    pub target: &'static str,
    /// The kind of failure.
    pub kind: CrashKind,
    /// The input (shrunk).
    pub input: Vec<u8>,
    /// The panic message and location, or the property that failed.
    pub message: String,
    /// The backtrace of a panic (empty otherwise).
    pub backtrace: String,
    /// Where it failed: the location of a panic, the first line of a
    /// violation, nothing for an allocation.
    pub site: String,
}

impl Crash {
    /// A property of the run itself that failed (no panic, no allocation):
    /// `site` groups it, `message` says what failed.
    fn violation(target: &'static str, input: Vec<u8>, message: String, site: &str) -> Self {
        Self {
            target,
            kind: CrashKind::Violation,
            input,
            message,
            backtrace: String::new(),
            site: site.into(),
        }
    }

    /// Groups failures that are the same bug (so are kept once, and a
    /// smaller input replaces a larger one while shrinking).
    fn key(&self) -> (CrashKind, String) {
        (self.kind, self.site.clone())
    }
}

/// What a run of one target did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Executions.
    pub execs: u64,
    /// Inputs the target decoded (a value that round-trips).
    pub accepted: u64,
    /// Time spent.
    pub elapsed: Duration,
    /// Executions that failed (all of them, not only those kept).
    pub failures: u64,
    /// Distinct failures, shrunk.
    pub crashes: Vec<Crash>,
    /// Most bytes one execution held at once.
    pub peak_bytes: usize,
    /// Input length of that execution.
    pub peak_input: usize,
    /// Whether allocations were counted (the binary installs
    /// [`crate::CountingAlloc`]).
    pub counted: bool,
    /// The slowest execution.
    pub slowest: Duration,
    /// Seeds at the end (built ones plus accepted mutants).
    pub corpus: usize,
}

impl Report {
    /// Executions per second.
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct PanicInfo {
    location: String,
    message: String,
    backtrace: String,
}

thread_local! {
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: RefCell<Option<PanicInfo>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps quiet about, and records, panics
/// inside a target, and passes others to the previous hook.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(std::cell::Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let backtrace =
                    alloc::paused(|| std::backtrace::Backtrace::force_capture().to_string());
                LAST_PANIC.with(|p| {
                    *p.borrow_mut() = Some(PanicInfo {
                        message: format!("panicked at {location}: {payload}"),
                        location,
                        backtrace,
                    })
                });
            } else {
                previous(info);
            }
        }));
    });
}

/// The allocation bound of `target` for an input of `len` bytes.
pub fn alloc_limit(target: &Target, len: usize) -> usize {
    target
        .alloc_factor
        .saturating_mul(len)
        .saturating_add(ALLOC_SLACK)
}

/// Runs `target` once on `input`: its outcome, or the failure, with the
/// most bytes held at once.
pub fn execute(target: &Target, input: &[u8]) -> (Result<Outcome, Crash>, usize) {
    install_hook();
    IN_TARGET.with(|t| t.set(true));
    let limit = alloc_limit(target, input.len());
    let (result, peak, over) = alloc::track_limited(limit, || {
        panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)))
    });
    IN_TARGET.with(|t| t.set(false));
    let crash = |kind, message: String, backtrace: String, site: String| Crash {
        target: target.name,
        kind,
        input: input.to_vec(),
        message,
        backtrace,
        site,
    };
    let outcome = match result {
        Ok(Ok(outcome)) => {
            if peak > limit {
                Err(crash(
                    CrashKind::Allocation,
                    format!(
                        "held {peak} bytes at once for a {}-byte input (bound {limit} = {} x input + {ALLOC_SLACK})",
                        input.len(),
                        target.alloc_factor
                    ),
                    over.unwrap_or_default(),
                    String::new(),
                ))
            } else {
                Ok(outcome)
            }
        }
        Ok(Err(violation)) => {
            let site = violation.lines().next().unwrap_or_default().to_string();
            Err(Crash::violation(
                target.name,
                input.to_vec(),
                violation,
                &site,
            ))
        }
        Err(_) => {
            let info = LAST_PANIC.with(|p| p.borrow_mut().take());
            let (message, backtrace, site) = info
                .map(|i| (i.message, i.backtrace, i.location))
                .unwrap_or_else(|| ("panicked".into(), String::new(), String::new()));
            Err(crash(CrashKind::Panic, message, backtrace, site))
        }
    };
    (outcome, peak)
}

fn rng_seed(seed: u64, name: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("floe fuzz rng v1");
    hasher.update(&seed.to_le_bytes());
    hasher.update(name.as_bytes());
    *hasher.finalize().as_bytes()
}

/// Shrinks a failure: simplifies the drawn input while it fails the same way.
fn shrink(
    target: &Target,
    tree: &mut dyn ValueTree<Value = Input>,
    pool: &[Vec<u8>],
    mut best: Crash,
) -> Crash {
    let key = best.key();
    if !tree.simplify() {
        return minimize(target, best);
    }
    for _ in 0..SHRINK_STEPS {
        let candidate = mutate::build(&tree.current(), pool);
        match execute(target, &candidate).0 {
            Err(crash) if crash.key() == key => {
                if crash.input.len() <= best.input.len() {
                    best = crash;
                }
                if !tree.simplify() {
                    break;
                }
            }
            _ => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    minimize(target, best)
}

/// Removes what the failure does not need from its input: chunks of
/// halving sizes, then single bytes zeroed, while it fails the same way
/// (proptest's shrinking works on the mutations, not on the bytes).
fn minimize(target: &Target, mut best: Crash) -> Crash {
    let key = best.key();
    let budget = std::cell::Cell::new(MINIMIZE_STEPS);
    let fails = |candidate: &[u8], best: &mut Crash| -> bool {
        if budget.get() == 0 {
            return false;
        }
        budget.set(budget.get() - 1);
        match execute(target, candidate).0 {
            Err(crash) if crash.key() == key => {
                *best = crash;
                true
            }
            _ => false,
        }
    };
    let mut chunk = best.input.len().div_ceil(2);
    while chunk > 0 && budget.get() > 0 {
        let mut at = 0;
        while at < best.input.len() && budget.get() > 0 {
            let end = (at + chunk).min(best.input.len());
            let mut candidate = best.input.clone();
            candidate.drain(at..end);
            if !fails(&candidate, &mut best) {
                at += chunk;
            }
        }
        chunk /= 2;
    }
    for at in 0..best.input.len() {
        if best.input[at] != 0 {
            let mut candidate = best.input.clone();
            candidate[at] = 0;
            fails(&candidate, &mut best);
        }
    }
    best
}

/// Counts a failure, and keeps it if it is a new one.
fn keep(report: &mut Report, kept: &mut BTreeMap<(CrashKind, String), usize>, crash: Crash) {
    report.failures += 1;
    let key = crash.key();
    if !kept.contains_key(&key) && kept.len() < MAX_KEPT {
        kept.insert(key, report.crashes.len());
        report.crashes.push(crash);
    }
}

/// Fuzzes `target` as `config` says: first each seed as it is (each must
/// be accepted), then drawn inputs until the time or execution budget is
/// spent.
pub fn fuzz(target: &Target, config: &FuzzConfig) -> Report {
    let started = Instant::now();
    let mut report = Report {
        target: target.name,
        execs: 0,
        accepted: 0,
        elapsed: Duration::ZERO,
        failures: 0,
        crashes: Vec::new(),
        peak_bytes: 0,
        peak_input: 0,
        counted: alloc::installed(),
        slowest: Duration::ZERO,
        corpus: 0,
    };
    let mut kept: BTreeMap<(CrashKind, String), usize> = BTreeMap::new();
    let mut pool = match (target.seeds)() {
        Ok(seeds) => seeds,
        Err(e) => {
            keep(
                &mut report,
                &mut kept,
                Crash::violation(target.name, Vec::new(), format!("no seeds: {e}"), "seeds"),
            );
            report.elapsed = started.elapsed();
            return report;
        }
    };
    let built = pool.len();
    let mut seen: HashSet<[u8; 32]> = pool.iter().map(|s| *blake3::hash(s).as_bytes()).collect();
    let record = |report: &mut Report, input_len: usize, peak: usize, took: Duration| {
        report.execs += 1;
        if peak > report.peak_bytes {
            report.peak_bytes = peak;
            report.peak_input = input_len;
        }
        report.slowest = report.slowest.max(took);
    };
    for seed in pool.clone() {
        let at = Instant::now();
        let (outcome, peak) = execute(target, &seed);
        record(&mut report, seed.len(), peak, at.elapsed());
        match outcome {
            Ok(Outcome::Accepted) => report.accepted += 1,
            Ok(Outcome::Rejected) => {
                let message = "a well-formed seed is rejected".to_string();
                keep(
                    &mut report,
                    &mut kept,
                    Crash::violation(target.name, seed, message, "seed rejected"),
                );
            }
            Err(crash) => keep(&mut report, &mut kept, crash),
        }
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &rng_seed(config.seed, target.name));
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = mutate::inputs();
    let deadline = started + config.duration;
    let budget = config.max_execs.unwrap_or(u64::MAX);
    let mut grown = 0usize;
    while report.execs < budget && Instant::now() < deadline {
        let Ok(mut tree) = strategy.new_tree(&mut runner) else {
            break;
        };
        let input = mutate::build(&tree.current(), &pool);
        let at = Instant::now();
        let (outcome, peak) = execute(target, &input);
        record(&mut report, input.len(), peak, at.elapsed());
        match outcome {
            Ok(Outcome::Accepted) => {
                report.accepted += 1;
                // A new well-formed value is a better place to mutate from
                // than the seed it came from: keep it (the oldest grown
                // ones make room once the pool is full).
                if seen.insert(*blake3::hash(&input).as_bytes()) {
                    if pool.len() < built + POOL_GROWTH {
                        pool.push(input);
                    } else {
                        pool[built + grown % POOL_GROWTH] = input;
                    }
                    grown += 1;
                }
            }
            Ok(Outcome::Rejected) => {}
            Err(crash) => {
                let crash = if kept.contains_key(&crash.key()) {
                    crash
                } else {
                    shrink(target, &mut *tree, &pool, crash)
                };
                keep(&mut report, &mut kept, crash);
            }
        }
    }
    report.corpus = pool.len();
    report.elapsed = started.elapsed();
    report
}
