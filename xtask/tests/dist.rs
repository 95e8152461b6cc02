//! `cargo xtask dist` packs what an operator installs: this test packs the
//! binaries this build made (the same packing as the release ones), then
//! unpacks the Debian package into a scratch root and checks its files, its
//! unit's paths and that the installed binaries run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> String {
    let program = program.as_ref();
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program:?}: {e}"));
    assert!(
        output.status.success(),
        "{program:?} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn only_file(dir: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("listing the output directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one *{suffix} in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_package_installs_a_runnable_node_with_its_unit_and_config() {
    let xtask = Path::new(env!("CARGO_BIN_EXE_xtask"));
    // `cargo test --workspace` builds floe and floe-node beside xtask.
    let binaries = xtask.parent().expect("the build directory");
    for name in ["floe", "floe-node"] {
        assert!(
            binaries.join(name).is_file(),
            "{name} is not in {}: run the workspace's tests (cargo test --workspace)",
            binaries.display()
        );
    }
    let out = tempfile::tempdir().expect("a temp dir");
    run(
        xtask,
        &[
            "dist".as_ref(),
            "--binaries".as_ref(),
            binaries.as_os_str(),
            "--out".as_ref(),
            out.path().as_os_str(),
        ],
    );
    let deb = only_file(out.path(), ".deb");
    let tarball = only_file(out.path(), ".tar.gz");

    // The control data: name, version, architecture, dependencies found
    // from the binaries' shared libraries, the config kept on upgrade.
    let field = |name: &str| run("dpkg-deb", &["-f".as_ref(), deb.as_os_str(), name.as_ref()]);
    assert_eq!(field("Package").trim(), "floe");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    let arch = run("dpkg", &["--print-architecture".as_ref()]);
    assert_eq!(field("Architecture").trim(), arch.trim());
    let depends = field("Depends");
    assert!(
        depends.contains("libc6 (>= "),
        "Depends names libc6 with its version: {depends}"
    );
    if arch.trim() == "amd64" {
        assert_eq!(
            field("Pre-Depends").trim(),
            "sse4.2-support",
            "the build needs SSE4.2"
        );
    }
    let control = tempfile::tempdir().expect("a temp dir");
    run(
        "dpkg-deb",
        &["-e".as_ref(), deb.as_os_str(), control.path().as_os_str()],
    );
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/floe/node.toml");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        assert_eq!(mode(&path), 0o755, "{script} is executable");
        run("sh", &["-n".as_ref(), path.as_os_str()]);
    }

    // Installed into a scratch root.
    let root = tempfile::tempdir().expect("a temp dir");
    run(
        "dpkg",
        &["-x".as_ref(), deb.as_os_str(), root.path().as_os_str()],
    );
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    for file in [
        "/usr/share/man/man1/floe.1.gz",
        "/usr/share/man/man1/floe-node.1.gz",
        "/usr/share/bash-completion/completions/floe",
        "/usr/share/doc/floe/copyright",
        "/usr/share/doc/floe/operator-guide.md",
    ] {
        assert!(at(file).is_file(), "{file} is installed");
    }
    for bin in ["/usr/bin/floe", "/usr/bin/floe-node"] {
        assert_eq!(mode(&at(bin)), 0o755, "{bin} is executable");
    }
    for dir in [
        "/usr/share/zsh/vendor-completions",
        "/usr/lib/systemd/system",
        "/etc/floe",
        "/usr/share/man/man1",
    ] {
        assert_eq!(mode(&at(dir)), 0o755, "{dir} is 0755 whatever the umask");
    }
    assert_eq!(
        mode(&at("/etc/floe/node.toml")),
        0o644,
        "the unit's dynamic user reads the config"
    );
    let man = run(
        "gzip",
        &[
            "-dc".as_ref(),
            at("/usr/share/man/man1/floe-node.1.gz").as_os_str(),
        ],
    );
    assert!(
        man.starts_with(".ie") || man.contains(".TH floe-node"),
        "a roff page: {man:.200}"
    );
    assert!(man.contains("keygen"), "the page lists the subcommands");

    // The unit starts the installed binary with the installed config.
    let unit =
        std::fs::read_to_string(at("/usr/lib/systemd/system/floe-node.service")).expect("the unit");
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(
        mode(&at(words[0])) & 0o111 != 0,
        "ExecStart runs an installed binary: {exec}"
    );
    let config = words
        .iter()
        .position(|w| *w == "--config")
        .and_then(|i| words.get(i + 1))
        .expect("ExecStart names a --config");
    assert!(
        at(config).is_file(),
        "ExecStart's config {config} is installed"
    );
    let node_toml = std::fs::read_to_string(at(config)).expect("the config");
    assert!(
        node_toml.contains("node_id"),
        "the installed config is the commented node.toml"
    );

    // The installed binaries run.
    let version = env!("CARGO_PKG_VERSION");
    for bin in ["/usr/bin/floe", "/usr/bin/floe-node"] {
        let name = bin.rsplit('/').next().expect("a name");
        let said = run(at(bin), &["--version".as_ref()]);
        assert_eq!(said.trim(), format!("{name} {version}"));
    }
    let help = run(
        at("/usr/bin/floe-node"),
        &["run".as_ref(), "--help".as_ref()],
    );
    assert!(help.contains("--config"), "floe-node run --help: {help}");

    // The tarball holds the same, for systems without dpkg.
    let listing = run("tar", &["-tzf".as_ref(), tarball.as_os_str()]);
    let top = format!("floe-{version}-{}-linux/", arch.trim());
    for file in [
        "bin/floe",
        "bin/floe-node",
        "share/floe/floe-node.service",
        "share/floe/node.toml",
        "share/man/man1/floe.1.gz",
        "LICENSE",
    ] {
        assert!(
            listing.lines().any(|l| l == format!("{top}{file}")),
            "the tarball holds {top}{file}: {listing}"
        );
    }
}
