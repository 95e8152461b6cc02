//! The layering docs/architecture.md describes is the one the manifests
//! declare, and the restructure's seams stay where they are: no file grows
//! past 700 lines, the fan-out loops stay in one driver, and the node's
//! service and tasks do not import each other.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every workspace package's name, with its manifest.
fn manifests() -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut paths = vec![root().join("Cargo.toml")];
    for dir in std::fs::read_dir(root().join("crates")).unwrap() {
        paths.push(dir.unwrap().path().join("Cargo.toml"));
    }
    for path in paths {
        let manifest: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        if let Some(name) = manifest
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
        {
            found.insert(name.to_string(), path);
        }
    }
    found
}

/// The Floe crates a manifest lists under `[dependencies]`.
fn floe_dependencies(manifest: &Path) -> BTreeSet<String> {
    let manifest: toml::Table = std::fs::read_to_string(manifest).unwrap().parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| {
            d.keys()
                .filter(|k| k.starts_with("floe"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_documented_layers_are_the_declared_ones() {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let manifests = manifests();
    let mut rows = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [name, deps] = cells[..] else { continue };
        let Some(manifest) = manifests.get(name) else {
            continue;
        };
        let documented: BTreeSet<String> = deps
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "none")
            .map(String::from)
            .collect();
        assert_eq!(
            documented,
            floe_dependencies(manifest),
            "docs/architecture.md's row for {name} differs from {}",
            manifest.display()
        );
        rows += 1;
    }
    // Every product crate and the testkit have a row.
    let expected = manifests.keys().filter(|n| *n != "floe-fuzz").count();
    assert_eq!(rows, expected, "a crate is missing from the layers table");
    for (name, manifest) in &manifests {
        assert!(
            !floe_dependencies(manifest).contains("floe-testkit"),
            "{name} depends on the test harness"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files_under(dirs: &[&str]) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&root().join(dir), &mut files);
    }
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

#[test]
fn the_seams_hold() {
    for (path, text) in files_under(&["crates", "src"]) {
        let lines = text.lines().count();
        assert!(lines <= 700, "{} has {lines} lines", path.display());
    }
    let loops: usize = files_under(&["crates/client", "crates/node"])
        .iter()
        .map(|(_, text)| text.matches("JoinSet::new").count())
        .sum();
    assert!(
        loops <= 2,
        "{loops} hand-written JoinSet loops: use floe_net::FanOut"
    );
    for (path, text) in files_under(&["crates/node/src"]) {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        if name.contains("tasks") {
            assert!(
                !text.contains("crate::service"),
                "{name} imports the service"
            );
        }
        if name.ends_with("service.rs") {
            assert!(!text.contains("crate::tasks"), "{name} imports the tasks");
        }
        assert!(
            !text.contains(", String>"),
            "{name} has an untyped error (Result<_, String>)"
        );
    }
}
