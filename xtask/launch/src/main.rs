//! `cargo xtask …`: builds Floe and runs the developer tasks (`xtask`) from
//! that build.
//!
//! Every task but the benchmarks runs from the same build that
//! `cargo test --workspace` uses: `cargo build --workspace --bins --tests`
//! in the dev profile (dependencies optimised, see the workspace manifest).
//! So the README's two commands compile RocksDB and every other dependency
//! once, whichever runs first. Benchmarks measure release code, and `dist`
//! packs it: for them the launcher builds `xtask` in the release profile,
//! on demand, and says so.
//!
//! The launcher itself has no dependencies, so `cargo xtask` compiles only
//! this file before the real build starts.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tasks that run from a release build: benchmarks measure optimised code,
/// and `dist` packs release binaries (built from the same release build).
const RELEASE_TASKS: &[&str] = &["bench", "dist"];

/// How long a build may run before the launcher says what it is doing.
const FIRST_NOTICE: Duration = Duration::from_secs(5);

/// How often a silent build (stderr not a terminal) reports progress.
const HEARTBEAT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let task = args.first().and_then(|a| a.to_str()).unwrap_or("");
    let release = RELEASE_TASKS.contains(&task);
    let executable = match build(release) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("cargo xtask: {message}");
            return ExitCode::FAILURE;
        }
    };
    run(&executable, &args)
}

fn workspace() -> PathBuf {
    // This crate lives in `xtask/launch`.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The arguments of the shared build. `xtask`'s testnet builds the
/// node binaries with the same ones: keep them equal.
fn build_args(release: bool) -> Vec<&'static str> {
    let mut args = vec![
        "build",
        "--locked",
        "--message-format=json-render-diagnostics",
    ];
    if release {
        args.extend(["--release", "--package", "xtask"]);
    } else {
        args.extend(["--workspace", "--bins", "--tests"]);
    }
    args
}

/// Builds and returns the path of the `xtask` binary. Cargo's own output
/// (progress bar, warnings, errors) goes to the terminal; its JSON messages
/// tell the launcher what finished, for the heartbeat and the binary's path.
fn build(release: bool) -> Result<PathBuf, String> {
    if release {
        eprintln!(
            "cargo xtask: this task runs from a release build (target/release): benchmarks \
             measure optimised code, and dist packs it. The first release build compiles \
             RocksDB again (about 15 to 20 minutes on 2 cores); later ones take seconds."
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    without_run_env(&mut command);
    let mut child = command
        .current_dir(workspace())
        .args(build_args(release))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "cargo's output was not captured".to_string())?;

    let progress = Arc::new(Progress {
        release,
        ..Progress::default()
    });
    let watcher = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || progress.watch())
    };
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if !line.contains("\"reason\":\"compiler-artifact\"") {
            continue;
        }
        progress.finished(&line);
        if is_xtask_binary(&line) {
            executable = json_string(&line, "executable").map(PathBuf::from);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    progress.done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if !status.success() {
        return Err("the build failed (cargo's errors are above)".into());
    }
    executable.ok_or_else(|| "cargo did not report the xtask binary".into())
}

/// What the build has finished so far, for the messages a long build prints.
#[derive(Default)]
struct Progress {
    built: AtomicUsize,
    compiled: AtomicUsize,
    last: Mutex<(Option<Instant>, String)>,
    /// RocksDB's C++ (the longest step of a first build) is built.
    rocksdb: AtomicBool,
    /// A release build (its notice was printed before it started).
    release: bool,
    done: AtomicBool,
}

impl Progress {
    fn finished(&self, line: &str) {
        self.built.fetch_add(1, Ordering::Relaxed);
        if line.contains("\"fresh\":false") {
            self.compiled.fetch_add(1, Ordering::Relaxed);
        }
        if json_string(line, "name").as_deref() == Some("librocksdb_sys") {
            self.rocksdb.store(true, Ordering::Relaxed);
        }
        if let (Ok(mut last), Some(name)) = (self.last.lock(), json_string(line, "name")) {
            *last = (Some(Instant::now()), name);
        }
    }

    /// Says once, early, what a long build is doing; when nobody sees
    /// cargo's progress bar (output to a file or a pipe), reports progress
    /// every minute so a first build never looks hung.
    fn watch(&self) {
        let start = Instant::now();
        let terminal = std::io::stderr().is_terminal();
        let mut noticed = false;
        let mut next_beat = start + HEARTBEAT;
        while !self.done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let now = Instant::now();
            if !noticed && !self.release && now - start >= FIRST_NOTICE {
                noticed = true;
                if self.compiled.load(Ordering::Relaxed) > 0
                    || self.built.load(Ordering::Relaxed) == 0
                {
                    eprintln!(
                        "cargo xtask: building Floe and its dependencies. A first build on a \
                         fresh machine compiles RocksDB's C++ from source and takes about 15 to \
                         25 minutes on 2 cores; later builds take seconds. The tests \
                         (scripts/test.sh) reuse this build."
                    );
                }
            }
            if !terminal && now >= next_beat {
                next_beat = now + HEARTBEAT;
                let minutes = (now - start).as_secs() / 60;
                let built = self.compiled.load(Ordering::Relaxed);
                let last = self
                    .last
                    .lock()
                    .map(|last| last.1.clone())
                    .unwrap_or_default();
                let last = if last.is_empty() {
                    String::new()
                } else {
                    format!(", last: {last}")
                };
                let step = if self.rocksdb.load(Ordering::Relaxed) {
                    "RocksDB is built; now compiling and linking Floe's crates, binaries and tests"
                } else {
                    "RocksDB's C++ is the longest step"
                };
                eprintln!(
                    "cargo xtask: still building ({minutes} min so far, {built} crates compiled{last}; {step})"
                );
            }
        }
    }
}

/// Whether a `compiler-artifact` message is the `xtask` binary itself (not
/// its test harness).
fn is_xtask_binary(line: &str) -> bool {
    line.contains("\"kind\":[\"bin\"]")
        && json_string(line, "name").as_deref() == Some("xtask")
        && line.contains("\"test\":false")
        && json_string(line, "executable").is_some()
}

/// The first string value of `key` in a line of JSON. Cargo's messages are
/// single-line objects; this handles the escapes a path can contain.
fn json_string(line: &str, key: &str) -> Option<String> {
    let pattern = format!("\"{key}\":\"");
    let start = line.find(&pattern)? + pattern.len();
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'u' => {
                    let code: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&code, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// Removes what `cargo run` set in this process's environment for the
/// launcher (`CARGO_PKG_NAME=xtask-launch`, `CARGO_MANIFEST_DIR`, ...).
/// Build scripts such as ring's read those names and ask to rerun when they
/// change, so a build started from here would otherwise differ from a
/// plain `cargo test` and make it rebuild half the graph.
fn without_run_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(name);
        }
    }
}

#[cfg(unix)]
fn run(executable: &Path, args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    // Replace this process, so signals (Ctrl-C) reach the task directly;
    // the task's own builds see the environment a plain `cargo` would.
    let mut command = Command::new(executable);
    without_run_env(&mut command);
    let error = command.args(args).exec();
    eprintln!(
        "cargo xtask: could not run {}: {error}",
        executable.display()
    );
    ExitCode::FAILURE
}

#[cfg(not(unix))]
fn run(executable: &Path, args: &[OsString]) -> ExitCode {
    let mut command = Command::new(executable);
    without_run_env(&mut command);
    match command.args(args).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8),
        Err(error) => {
            eprintln!(
                "cargo xtask: could not run {}: {error}",
                executable.display()
            );
            ExitCode::FAILURE
        }
    }
}
