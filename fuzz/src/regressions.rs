//! Every input a fuzz run has failed on, kept as a regression test: each
//! must now be handled (accepted or refused) without panicking and within
//! its target's allocation bound.

/// `(target, input as hex, what it broke)`.
pub const CASES: &[(&str, &str, &str)] = &[
    (
        "api_request",
        "0a 00 808001",
        "a Reconcile request of 4 bytes claiming 16384 facts reserves 16384 x size_of::<Fact>() (about 5 MB) in floe-api's bounded decoder",
    ),
    (
        "api_response",
        "0a 00 808001",
        "a Reconcile response of 4 bytes claiming 16384 facts",
    ),
    (
        "frame",
        "00 0b00 04000000 00 808001",
        "the same Reconcile request through its frame",
    ),
    (
        "gateway_range",
        "00 62797465733d302d",
        "`Range: bytes=0-` on an empty blob gives 0..=0, which the gateway slices out of 0 bytes",
    ),
];

/// Failures in code other engineers own, reported to them and not fixed
/// yet: replayed by an ignored test (`floe_fuzz-* --ignored`); each moves
/// to [`CASES`] once fixed.
pub const OPEN: &[(&str, &str, &str)] = &[];

/// Decodes the hex of a case.
pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    let text: String = text.split_whitespace().collect();
    if !text.is_ascii() {
        return Err("not hex".into());
    }
    if text.len() % 2 != 0 {
        return Err(format!("odd hex length {}", text.len()));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{execute, target};

    #[test]
    fn every_case_is_handled() {
        for (name, hex, what) in CASES {
            let target = target(name).unwrap_or_else(|| panic!("no target {name}"));
            let input = unhex(hex).unwrap();
            let (outcome, peak) = execute(target, &input);
            if let Err(crash) = outcome {
                panic!(
                    "{name} still fails ({what}): {:?} {}\n{}\npeak {peak}",
                    crash.kind, crash.message, crash.backtrace
                );
            }
        }
    }

    /// The open cases, each expected to fail until its owner fixes it.
    #[test]
    #[ignore = "failures reported to their owners, not fixed yet"]
    fn open_cases() {
        let mut still = Vec::new();
        for (name, hex, what) in OPEN {
            let target = target(name).unwrap_or_else(|| panic!("no target {name}"));
            let (outcome, peak) = execute(target, &unhex(hex).unwrap());
            if let Err(crash) = outcome {
                still.push(format!(
                    "{name} ({what}): {:?} {} (peak {peak})\n{}",
                    crash.kind,
                    crash.message,
                    crash
                        .backtrace
                        .lines()
                        .filter(|l| l.contains("floe")
                            || l.contains("at ./")
                            || l.contains("crates/"))
                        .take(24)
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        assert!(still.is_empty(), "{}", still.join("\n"));
    }

    #[test]
    fn hex_decodes() {
        assert_eq!(unhex("00ff 7f").unwrap(), [0, 0xff, 0x7f]);
        assert!(unhex("0").is_err());
        assert!(unhex("zz").is_err());
    }
}
