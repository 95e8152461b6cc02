//! The `floe-node` binary: keygen and refusing a bad config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;

fn floe_node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floe-node"))
}

#[test]
fn keygen_writes_private_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = floe_node()
        .args(["keygen", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    for name in ["protocol.key", "network.key"] {
        let path = dir.path().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64, "{name} holds a hex seed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name} is private");
        }
    }
    let before = std::fs::read(dir.path().join("protocol.key")).unwrap();
    let again = floe_node()
        .args(["keygen", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a second keygen must not overwrite keys"
    );
    assert_eq!(
        std::fs::read(dir.path().join("protocol.key")).unwrap(),
        before
    );
}

#[test]
fn run_refuses_a_config_naming_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "node_id = \"node-0\"\nlisten = \"not an address\"\n",
    )
    .unwrap();
    let output = floe_node()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen"), "{stderr}");
}
