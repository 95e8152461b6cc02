//! The user guide's command-line examples, run against a real local
//! committee: every `$ floe …` line of its `console` blocks is executed and
//! its output compared with the guide's, blob IDs and numbers masked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use floe_node::{Limits, Tasks};
use floe_testkit::local::Cluster;

/// `(command, expected output lines)` of every `$ floe` line in `console`
/// blocks.
fn examples(guide: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_console = false;
    for line in guide.lines() {
        if line.starts_with("```") {
            in_console = line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ ") {
            out.push((command.to_owned(), Vec::new()));
        } else if let Some((_, expected)) = out.last_mut() {
            expected.push(line.to_owned());
        }
    }
    out
}

/// Masks blob IDs (43 characters of URL-safe base64) and numbers.
fn mask(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive(|c: char| c.is_whitespace() || c == ':' || c == ',') {
        let core = word.trim_end_matches(|c: char| c.is_whitespace() || c == ':' || c == ',');
        let is_id = core.len() == 43
            && core
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if is_id {
            out.push_str("<ID>");
            out.push_str(&word[core.len()..]);
        } else {
            out.push_str(word);
        }
    }
    let mut masked = String::new();
    let mut last_digit = false;
    for c in out.chars() {
        if c.is_ascii_digit() {
            if !last_digit {
                masked.push('N');
            }
            last_digit = true;
        } else {
            masked.push(c);
            last_digit = false;
        }
    }
    masked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_guide_examples_run_as_written() {
    // The manifest dir of this run (cargo sets it when running tests), not
    // the one baked in at compile time: with a shared target dir a test
    // binary may have been built from another checkout.
    let root = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    );
    let guide = std::fs::read_to_string(root.join("docs/user-guide.md")).unwrap();
    let examples = examples(&guide);
    assert!(examples.len() >= 3, "the guide has command examples");

    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::brisk();
    let cluster = Cluster::start(dir.path(), 7, 100, 3_600_000, Limits::default(), tasks)
        .await
        .unwrap();
    let config = dir.path().join("client.toml");
    std::fs::write(&config, "committee = \"committee.toml\"\n").unwrap();
    // The files the examples name.
    std::fs::write(
        dir.path().join("photo.jpg"),
        (0..245_731u32).map(|i| (i % 249) as u8).collect::<Vec<_>>(),
    )
    .unwrap();

    // The guide's example blob ID stands for the one the store returns.
    let mut example_id: Option<String> = None;
    let mut actual_id: Option<String> = None;
    for (command, expected) in examples {
        let mut command = command;
        if let (Some(example), Some(actual)) = (&example_id, &actual_id) {
            command = command.replace(example.as_str(), actual);
        }
        let args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect();
        let (cwd, config) = (dir.path().to_owned(), config.clone());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
                .args(&args)
                .current_dir(cwd)
                .env("FLOE_CONFIG", config)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "`{command}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if command.starts_with("floe store") {
            let id_of = |text: &str| {
                text.split_whitespace()
                    .skip_while(|w| *w != "blob")
                    .nth(1)
                    .map(str::to_owned)
            };
            example_id = id_of(&expected.join("\n"));
            actual_id = id_of(&stdout);
        }
        assert_eq!(
            mask(stdout.trim_end()),
            mask(&expected.join("\n")),
            "`{command}` printed something else than the guide shows"
        );
    }
    assert!(
        std::fs::read(dir.path().join("copy.jpg")).unwrap()
            == std::fs::read(dir.path().join("photo.jpg")).unwrap()
    );
    cluster.shutdown().await;
}
