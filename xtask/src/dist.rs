//! `cargo xtask dist`: `floe` and `floe-node` built in release and packed
//! for operators: a Debian package (built with `dpkg-deb`, Debian's own
//! packer) and a tarball for other systems, both under `target/dist/`.
//!
//! What the package holds:
//!
//! | path | what |
//! |---|---|
//! | `/usr/bin/floe`, `/usr/bin/floe-node` | the binaries (debug info stripped) |
//! | `/usr/lib/systemd/system/floe-node.service` | the unit from `deploy/systemd/` |
//! | `/etc/floe/node.toml` | the commented configuration (a conffile: upgrades keep an edited copy) |
//! | `/usr/share/man/man1/floe.1.gz`, `floe-node.1.gz` | manual pages, rendered from each binary's own `--help` |
//! | `/usr/share/bash-completion/…`, `zsh/…`, `fish/…` | completions for `floe` |
//! | `/usr/share/doc/floe/` | README, operator guide, copyright |
//!
//! The node is not started on install: it needs its keys and the committee
//! file first (see the operator guide).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::bench::target_dir;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const MAINTAINER: &str = "Floe developers <https://github.com/floe-storage/floe/issues>";

const DESCRIPTION: &str = "\
decentralized blob store with provable blob states
 Floe stores blobs erasure-coded (RedStuff) across a committee of storage
 nodes. A blob is available from the moment a quorum of shards has signed
 for it, reads are verified against the blob ID, and nodes repair what they
 miss on their own.
 .
 This package holds floe-node, the storage node (with its systemd unit and
 a commented configuration), and floe, the client command line and HTTP
 gateway.";

/// Builds (unless `binaries` names a directory holding `floe` and
/// `floe-node` already) and packs. Returns the package and the tarball.
pub fn run(binaries: Option<PathBuf>, out: Option<PathBuf>) -> Result<(PathBuf, PathBuf)> {
    let bin_dir = match binaries {
        Some(dir) => dir,
        None => build_release()?,
    };
    let out = out.unwrap_or_else(|| target_dir().join("dist"));
    let floe = bin_dir.join("floe");
    let node = bin_dir.join("floe-node");
    for bin in [&floe, &node] {
        ensure!(
            bin.is_file(),
            "{} is missing: build it first",
            bin.display()
        );
    }
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let arch = deb_architecture()?;
    let stage = out.join(format!("floe_{VERSION}_{arch}"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    stage_tree(&stage, &floe, &node)?;
    let deb = out.join(format!("floe_{VERSION}_{arch}.deb"));
    write_control(&stage, &arch)?;
    run_tool(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "-z9", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    let tarball = tarball(&stage, &out, &arch)?;
    std::fs::remove_dir_all(&stage).ok();
    println!("wrote {}", deb.display());
    println!("wrote {}", tarball.display());
    Ok((deb, tarball))
}

/// `cargo build --release` of the two binaries; returns their directory.
fn build_release() -> Result<PathBuf> {
    eprintln!(
        "cargo xtask dist: building floe and floe-node in release (they share the release \
         build cargo xtask made for this task)"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_tool(
        Command::new(cargo)
            .current_dir(crate::testnet::workspace())
            .args([
                "build",
                "--release",
                "--locked",
                "--bin",
                "floe",
                "--bin",
                "floe-node",
            ]),
    )?;
    Ok(target_dir().join("release"))
}

/// The directory tree the package installs, under `stage`.
fn stage_tree(stage: &Path, floe: &Path, node: &Path) -> Result<()> {
    let root = crate::testnet::workspace();
    let bin = stage.join("usr/bin");
    install_binary(floe, &bin.join("floe"))?;
    install_binary(node, &bin.join("floe-node"))?;

    let unit = std::fs::read_to_string(root.join("deploy/systemd/floe-node.service"))
        .context("reading deploy/systemd/floe-node.service")?;
    ensure!(
        unit.contains("ExecStart=/usr/bin/floe-node "),
        "deploy/systemd/floe-node.service must start /usr/bin/floe-node, where the package puts it"
    );
    write(
        &stage.join("usr/lib/systemd/system/floe-node.service"),
        unit.as_bytes(),
        0o644,
    )?;
    // No secrets in it (keys are files of their own), and the unit's
    // dynamic user must read it.
    copy(
        &root.join("deploy/systemd/node.toml"),
        &stage.join("etc/floe/node.toml"),
        0o644,
    )?;

    let man = stage.join("usr/share/man/man1");
    write(
        &man.join("floe.1.gz"),
        &gzip(&output_of(floe, &["man"])?)?,
        0o644,
    )?;
    write(
        &man.join("floe-node.1.gz"),
        &gzip(&output_of(node, &["man"])?)?,
        0o644,
    )?;
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/floe"),
        ("zsh", "usr/share/zsh/vendor-completions/_floe"),
        ("fish", "usr/share/fish/vendor_completions.d/floe.fish"),
    ] {
        write(
            &stage.join(path),
            &output_of(floe, &["completions", shell])?,
            0o644,
        )?;
    }

    let doc = stage.join("usr/share/doc/floe");
    copy(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    copy(
        &root.join("docs/operator-guide.md"),
        &doc.join("operator-guide.md"),
        0o644,
    )?;
    let copyright = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: floe\nSource: https://github.com/floe-storage/floe\n\n\
         Files: *\nCopyright: the Floe developers\nLicense: Apache-2.0\n \
         On Debian systems the full text of the Apache License 2.0 is in\n \
         /usr/share/common-licenses/Apache-2.0.\n";
    write(&doc.join("copyright"), copyright.as_bytes(), 0o644)?;
    copy(&root.join("LICENSE"), &doc.join("LICENSE"), 0o644)?;
    // Directories the package creates are 0755 whatever the builder's
    // umask: dpkg keeps the modes of directories it creates.
    directories_0755(stage)
}

fn directories_0755(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            directories_0755(&path)?;
        }
    }
    Ok(())
}

/// `DEBIAN/`: control (with the shared libraries' packages as
/// dependencies), conffiles and the maintainer scripts.
fn write_control(stage: &Path, arch: &str) -> Result<()> {
    let depends =
        shared_library_packages(&[stage.join("usr/bin/floe"), stage.join("usr/bin/floe-node")])?;
    let installed_kib = tree_size(stage)?.div_ceil(1024);
    // The amd64 build uses SSE4.2, PCLMULQDQ and POPCNT (.cargo/config.toml):
    // isa-support's package refuses to install on a CPU without them.
    let pre_depends = if arch == "amd64" {
        "Pre-Depends: sse4.2-support\n"
    } else {
        ""
    };
    let control = format!(
        "Package: floe\nVersion: {VERSION}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n{pre_depends}Depends: {}\nSection: net\nPriority: optional\n\
         Homepage: https://github.com/floe-storage/floe\nDescription: {DESCRIPTION}\n",
        depends.join(", ")
    );
    let debian = stage.join("DEBIAN");
    write(&debian.join("control"), control.as_bytes(), 0o644)?;
    write(&debian.join("conffiles"), b"/etc/floe/node.toml\n", 0o644)?;
    // The unit is installed, not enabled: a node needs keys and a committee
    // file before it can start.
    let reload =
        "if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null || true; fi\n";
    // An upgrade restarts a running node (a clean stop: it finishes what
    // is in flight and closes its database) so the new binary serves.
    let restart =
        "if [ -d /run/systemd/system ] && [ \"$1\" = configure ] && [ -n \"$2\" ]; then\n    \
                   systemctl try-restart floe-node.service >/dev/null || true\nfi\n";
    write(
        &debian.join("postinst"),
        format!("#!/bin/sh\nset -e\n{reload}{restart}").as_bytes(),
        0o755,
    )?;
    write(
        &debian.join("prerm"),
        b"#!/bin/sh\nset -e\nif [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then\n    \
          systemctl stop floe-node.service >/dev/null 2>&1 || true\nfi\n",
        0o755,
    )?;
    write(
        &debian.join("postrm"),
        format!("#!/bin/sh\nset -e\n{reload}").as_bytes(),
        0o755,
    )
}

/// The tarball for systems without dpkg: `floe-VERSION-ARCH/` with `bin/`,
/// `share/` and the unit and configuration under `share/floe/`.
fn tarball(stage: &Path, out: &Path, arch: &str) -> Result<PathBuf> {
    let name = format!("floe-{VERSION}-{arch}-linux");
    let top = out.join(&name);
    if top.exists() {
        std::fs::remove_dir_all(&top)?;
    }
    for (from, to) in [
        ("usr/bin/floe", "bin/floe"),
        ("usr/bin/floe-node", "bin/floe-node"),
        ("usr/share/man/man1/floe.1.gz", "share/man/man1/floe.1.gz"),
        (
            "usr/share/man/man1/floe-node.1.gz",
            "share/man/man1/floe-node.1.gz",
        ),
        (
            "usr/lib/systemd/system/floe-node.service",
            "share/floe/floe-node.service",
        ),
        ("etc/floe/node.toml", "share/floe/node.toml"),
        ("usr/share/doc/floe/README.md", "README.md"),
        (
            "usr/share/doc/floe/operator-guide.md",
            "share/doc/floe/operator-guide.md",
        ),
        ("usr/share/doc/floe/LICENSE", "LICENSE"),
    ] {
        let mode = if to.starts_with("bin/") { 0o755 } else { 0o644 };
        copy(&stage.join(from), &top.join(to), mode)?;
    }
    let tarball = out.join(format!("{name}.tar.gz"));
    let result = run_tool(
        Command::new("tar")
            .arg("-C")
            .arg(out)
            .args(["--owner=0", "--group=0", "-czf"])
            .arg(&tarball)
            .arg(&name),
    );
    std::fs::remove_dir_all(&top).ok();
    result.map(|()| tarball)
}

fn deb_architecture() -> Result<String> {
    let arch = output_of(Path::new("dpkg"), &["--print-architecture"])
        .context("dpkg is needed to pack the Debian package")?;
    Ok(String::from_utf8_lossy(&arch).trim().to_string())
}

/// The Debian packages that hold the shared libraries the binaries load
/// (what `dpkg-shlibdeps` computes, without needing a source package).
fn shared_library_packages(binaries: &[PathBuf]) -> Result<Vec<String>> {
    let mut packages = std::collections::BTreeSet::new();
    for binary in binaries {
        let listing = output_of(Path::new("ldd"), &[&binary.to_string_lossy()])?;
        for line in String::from_utf8_lossy(&listing).lines() {
            // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)"
            let Some(path) = line.split("=> ").nth(1).and_then(|r| r.split(' ').next()) else {
                continue;
            };
            if !path.starts_with('/') {
                continue;
            }
            let owner = output_of(Path::new("dpkg"), &["-S", path])
                .or_else(|_| {
                    // Merged /usr: dpkg may know the file under the other name.
                    let other = match path.strip_prefix("/usr") {
                        Some(rest) => rest.to_string(),
                        None => format!("/usr{path}"),
                    };
                    output_of(Path::new("dpkg"), &["-S", &other])
                })
                .with_context(|| format!("no Debian package holds {path}"))?;
            // "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6"; diversion
            // lines ("diversion by ...") name no package.
            let owner = String::from_utf8_lossy(&owner);
            let Some(name) = owner
                .lines()
                .find(|line| !line.starts_with("diversion"))
                .and_then(|line| line.split(':').next())
                .map(str::trim)
            else {
                continue;
            };
            // At least the version built against: a newer library's
            // symbols are missing from older ones.
            let version = output_of(Path::new("dpkg-query"), &["-W", "-f=${Version}", name])
                .map(|v| upstream_version(String::from_utf8_lossy(&v).trim()))
                .unwrap_or_default();
            packages.insert(if version.is_empty() {
                name.to_string()
            } else {
                format!("{name} (>= {version})")
            });
        }
    }
    ensure!(
        !packages.is_empty(),
        "ldd named no shared library of the binaries"
    );
    Ok(packages.into_iter().collect())
}

/// A Debian version without its Debian revision (`2.36-9+deb12u4` is
/// `2.36`): the library's own version is what a binary needs, not the
/// builder's patch level.
fn upstream_version(version: &str) -> String {
    version
        .rsplit_once('-')
        .map_or(version, |(upstream, _)| upstream)
        .to_string()
}

fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            tree_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Copies a binary without its debug info (symbols stay, for backtraces).
fn install_binary(from: &Path, to: &Path) -> Result<()> {
    copy(from, to, 0o755)?;
    run_tool(Command::new("strip").arg("--strip-debug").arg(to))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    let mut stdin = child.stdin.take().context("gzip's input")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().context("running gzip")?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writing to gzip panicked"))?
        .context("writing to gzip")?;
    ensure!(output.status.success(), "gzip failed");
    Ok(output.stdout)
}

fn output_of(program: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !output.status.success() {
        bail!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

fn run_tool(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    ensure!(
        status.success(),
        "{:?} failed ({status})",
        command.get_program()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &bytes, mode)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}
