//! The client config: which committee `floe` talks to, and the key that
//! owns deletable blobs.
//!
//! ```toml
//! # The committee file (relative paths are relative to this file).
//! committee = "committee.toml"
//! # Owns blobs stored with --deletable; created (mode 0600) on first use.
//! owner_key = "owner.key"
//! # For committees that admit writes by grant: this client's key (proven
//! # in every connection; created on first use) and the grant an operator
//! # issued for its public key (`floe-node grant issue`).
//! key = "client.key"
//! grant = "grant.txt"
//! ```

use std::path::{Path, PathBuf};

use floe_consensus::{CommitteeFile, KeyPair};
use floe_node::config::ConfigError as FileError;
use serde::Deserialize;

/// The environment variable naming the client config.
pub const ENV: &str = "FLOE_CONFIG";

/// The client config as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    committee: PathBuf,
    owner_key: Option<PathBuf>,
    key: Option<PathBuf>,
    grant: Option<PathBuf>,
}

/// A loaded client config.
#[derive(Debug)]
pub struct ClientFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The committee.
    pub committee: CommitteeFile,
    /// The owner key file, if configured.
    pub owner_key: Option<PathBuf>,
    /// The client key file, if configured.
    pub key: Option<PathBuf>,
    /// The grant file, if configured.
    pub grant: Option<PathBuf>,
}

/// Why no config could be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// None of the places looked at holds a config.
    #[error("no client config found; looked at {}.\nCreate one holding `committee = \"/path/to/committee.toml\"` (`cargo xtask testnet up` writes one for a local network), then pass it with --config or set {ENV}", describe(.tried))]
    Missing {
        /// The places looked at.
        tried: Vec<String>,
    },
    /// A file cannot be read or is not valid (the message names it).
    #[error(transparent)]
    File(#[from] FileError),
}

fn describe(tried: &[String]) -> String {
    tried.join(", ")
}

/// Finds and loads the client config: `flag`, then `$FLOE_CONFIG`, then
/// `floe/client.toml` in the user's config directory.
pub fn load(flag: Option<&Path>) -> Result<ClientFile, ConfigError> {
    let mut tried = Vec::new();
    if let Some(path) = flag {
        return read(path);
    }
    match std::env::var_os(ENV) {
        Some(value) if !value.is_empty() => return read(Path::new(&value)),
        _ => tried.push(format!("--config (not given), ${ENV} (not set)")),
    }
    if let Some(dir) = dirs::config_dir() {
        let path = dir.join("floe").join("client.toml");
        if path.exists() {
            return read(&path);
        }
        tried.push(format!("{} (absent)", path.display()));
    }
    Err(ConfigError::Missing { tried })
}

fn read(path: &Path) -> Result<ClientFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.into(),
        source,
    })?;
    let raw: Raw = toml::from_str(&text).map_err(|e| FileError::Invalid {
        path: path.into(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let committee_path = base.join(&raw.committee);
    let committee_text =
        std::fs::read_to_string(&committee_path).map_err(|source| FileError::Read {
            path: committee_path.clone(),
            source,
        })?;
    let committee = CommitteeFile::from_toml(&committee_text).map_err(|e| FileError::Invalid {
        path: committee_path,
        message: e.to_string(),
    })?;
    Ok(ClientFile {
        path: path.into(),
        committee,
        owner_key: raw.owner_key.map(|key| base.join(key)),
        key: raw.key.map(|key| base.join(key)),
        grant: raw.grant.map(|grant| base.join(grant)),
    })
}

impl ClientFile {
    /// The owner key, created on first use when the file is absent.
    pub fn owner(&self) -> Result<KeyPair, ConfigError> {
        let Some(path) = &self.owner_key else {
            return Err(FileError::Invalid {
                path: self.path.clone(),
                message: "deletable blobs need an owner key: add `owner_key = \"owner.key\"` (it is created on first use)".into(),
            }
            .into());
        };
        key_file(path, "owner")
    }

    /// The client settings this config makes: its key and grant, if set.
    pub fn client_config(&self) -> Result<floe_client::ClientConfig, ConfigError> {
        let identity = match &self.key {
            Some(path) => Some(std::sync::Arc::new(key_file(path, "client")?)),
            None => None,
        };
        let grant = match &self.grant {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
                    path: path.clone(),
                    source,
                })?;
                let grant =
                    floe_consensus::Signed::<floe_consensus::grant::StorageGrant>::from_text(&text)
                        .map_err(|message| FileError::Invalid {
                            path: path.clone(),
                            message,
                        })?;
                let named = grant.message.body.client;
                if identity.as_ref().map(|k| k.public()) != Some(named) {
                    return Err(FileError::Invalid {
                        path: path.clone(),
                        message: format!(
                            "the grant names client key {named}, but the config's `key` is {}",
                            identity
                                .as_ref()
                                .map_or_else(|| "not set".to_string(), |k| k.public().to_string())
                        ),
                    }
                    .into());
                }
                Some(grant)
            }
            None => None,
        };
        // Lab only: the client's links shaped as the testnet's are.
        let link_shape =
            floe_net::LinkProfile::from_env().map_err(|message| FileError::Invalid {
                path: self.path.clone(),
                message,
            })?;
        let defaults = floe_client::ClientConfig::default();
        Ok(floe_client::ClientConfig {
            identity,
            grant,
            net: floe_net::NetConfig {
                link_shape,
                ..defaults.net.clone()
            },
            ..defaults
        })
    }
}

/// A key file, created on first use when absent.
fn key_file(path: &Path, role: &str) -> Result<KeyPair, ConfigError> {
    {
        if !path.exists() {
            let key = KeyPair::generate(&mut rand::rngs::OsRng);
            floe_node::config::write_key(path, &key).map_err(|source| FileError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            eprintln!(
                "floe: created {role} key {} (public key {})",
                path.display(),
                key.public()
            );
            return Ok(key);
        }
        Ok(floe_node::config::read_key(path, &format!("{role} key"))?)
    }
}
