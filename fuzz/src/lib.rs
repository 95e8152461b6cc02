//! # floe-fuzz
//!
//! Fuzzing on stable Rust of every parser that reads untrusted bytes:
//! frames, PutPairs frames, every floe-api request and response, committee
//! files, store envelopes and sliver records, inconsistency proofs,
//! certificates and facts, digest messages, and the gateway's `Range` and
//! query handling ([`TARGETS`]).
//!
//! ## Engine
//!
//! The machines have no nightly toolchain, so libFuzzer (cargo-fuzz) is out.
//! The engine is [proptest], already a dependency of the workspace's tests
//! (`arbitrary` and bolero are not in `Cargo.lock`, and every new crate is
//! a risk of rebuilding RocksDB through feature unification): its
//! strategies draw each input from a seeded ChaCha stream, reproducibly,
//! and its value trees shrink a failing input. An input is either a
//! well-formed seed with one to four mutations (bit flips, byte edits,
//! truncation, insertion, removal, duplication, integer and ULEB128 length
//! inflation, splicing and crossing over with other seeds) or arbitrary
//! bytes. There is no coverage feedback; instead, mutants that decode are
//! kept as seeds, so later mutations start from new well-formed values.
//!
//! ## Property
//!
//! For every input, a target ([`Target::run`]) must not panic, must not
//! hold more than [`Target::alloc_factor`] times the input plus
//! [`ALLOC_SLACK`] bytes at once (counted by [`CountingAlloc`] when the
//! binary installs it), and must either refuse the input with a typed error
//! or decode a value that encodes back to the same bytes (for TOML, which
//! has many spellings: that reads back as the same value). Well-formed
//! seeds must be accepted.
//!
//! `cargo xtask fuzz [--duration S] [TARGET]` runs the targets; the tests
//! of this crate run each for a short bounded pass and replay the inputs
//! of every failure found so far ([`regressions`]).

mod alloc;
mod engine;
mod fixtures;
mod mutate;
pub mod regressions;
mod targets;

pub use alloc::{installed as counting_installed, track, CountingAlloc};
pub use engine::{alloc_limit, execute, fuzz, Crash, CrashKind, FuzzConfig, Report, ALLOC_SLACK};
pub use mutate::{Input, Mutation, Pos, Width};
pub use targets::{target, Outcome, Target, Verdict, DEFAULT_ALLOC_FACTOR, TARGETS};

#[cfg(test)]
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn allocations_are_counted_in_tests() {
        assert!(counting_installed());
        let ((), peak) = track(|| drop(std::hint::black_box(vec![0u8; 10_000])));
        assert!((10_000..20_000).contains(&peak), "{peak}");
    }

    #[test]
    fn every_seed_is_accepted() {
        for target in TARGETS {
            let seeds = (target.seeds)().unwrap();
            assert!(!seeds.is_empty(), "{}", target.name);
            for seed in seeds {
                let (outcome, _) = execute(target, &seed);
                assert_eq!(
                    outcome.map_err(|c| c.message),
                    Ok(Outcome::Accepted),
                    "{}: seed {}",
                    target.name,
                    seed.iter().map(|b| format!("{b:02x}")).collect::<String>()
                );
            }
        }
    }

    /// The bounded pass of every target that `cargo test` runs: a few
    /// hundred executions each (about a second in all on two cores).
    #[test]
    fn every_target_survives_a_short_pass() {
        let config = FuzzConfig {
            duration: Duration::from_secs(2),
            max_execs: Some(400),
            seed: 7,
        };
        let mut failures = Vec::new();
        for target in TARGETS {
            let report = fuzz(target, &config);
            assert!(
                report.execs >= 100,
                "{}: {} executions",
                target.name,
                report.execs
            );
            assert!(report.counted);
            for crash in report.crashes {
                failures.push(format!(
                    "{} {:?}: {}\n  input {}\n{}",
                    crash.target,
                    crash.kind,
                    crash.message,
                    crash
                        .input
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                    crash.backtrace
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn panicking(input: &[u8]) -> Verdict {
        if input.windows(2).any(|w| w == [0xde, 0xad]) {
            panic!("dead");
        }
        Ok(Outcome::Rejected)
    }

    fn hoarding(input: &[u8]) -> Verdict {
        // Reserves what a length prefix says, as a careless decoder would.
        let claimed = input.first().map_or(0, |b| usize::from(*b)) << 20;
        let buffer: Vec<u8> = Vec::with_capacity(claimed);
        Ok(if buffer.capacity() > 0 {
            Outcome::Accepted
        } else {
            Outcome::Rejected
        })
    }

    fn seeds() -> Result<Vec<Vec<u8>>, String> {
        Ok(vec![b"seed\xdf\xad tail".to_vec()])
    }

    #[test]
    fn panics_are_caught_and_shrunk() {
        let target = Target {
            name: "test_panic",
            about: "",
            run: panicking,
            seeds,
            alloc_factor: DEFAULT_ALLOC_FACTOR,
        };
        // The seed is rejected (not accepted): one violation, kept apart.
        let report = fuzz(
            &target,
            &FuzzConfig {
                duration: Duration::from_secs(20),
                max_execs: Some(50_000),
                seed: 3,
            },
        );
        let panic = report
            .crashes
            .iter()
            .find(|c| c.kind == CrashKind::Panic)
            .expect("no panic found");
        assert!(panic.message.contains("dead"), "{}", panic.message);
        assert!(panic.message.contains("lib.rs"), "{}", panic.message);
        assert!(panic.input.windows(2).any(|w| w == [0xde, 0xad]));
        // Shrunk: far shorter than the seed plus a mutation or two.
        assert!(panic.input.len() <= 20, "{:02x?}", panic.input);
        assert!(!panic.backtrace.is_empty());
    }

    #[test]
    fn allocations_beyond_the_bound_are_caught() {
        let target = Target {
            name: "test_hoard",
            about: "",
            run: hoarding,
            seeds,
            alloc_factor: DEFAULT_ALLOC_FACTOR,
        };
        // 0x08 << 20 = 8 MiB for a one-byte input: over 64 + 4 MiB.
        let (outcome, peak) = execute(&target, &[8]);
        assert!(peak >= 8 << 20);
        let crash = outcome.unwrap_err();
        assert_eq!(crash.kind, CrashKind::Allocation);
        // With the stack of the allocation that went over.
        assert!(crash.backtrace.contains("hoarding"), "{}", crash.backtrace);
        // 2 MiB is within the slack.
        assert_eq!(execute(&target, &[2]).0.unwrap(), Outcome::Accepted);
    }
}
