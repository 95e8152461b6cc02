//! Query parameters, parsed strictly.
//!
//! Where a route is shared with Walrus's publisher or aggregator, every
//! parameter Walrus's OpenAPI documents for it is recognised. A value Floe
//! can honour is honoured; a value it cannot (an `encoding_type` other than
//! `RedStuff`, a Sui address to send an object to) is refused with 400
//! rather than ignored, so a caller never believes it got what it did not.
//! A store also refuses parameter names it does not know: a misspelt
//! `epoch=30` would otherwise store for the default single epoch. Reads
//! ignore unknown names, as Walrus aggregators do (cache busters and
//! download hints are common on read URLs).

use crate::GatewayError;

/// What a store asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreParams {
    /// `epochs`, when given.
    pub epochs: Option<Epochs>,
    /// Whether the blob is deletable (`deletable=true` or `permanent=false`).
    pub deletable: bool,
    /// `force=true`: upload and certify even if already certified.
    pub force: bool,
}

/// An `epochs` value as given: a number, or digits too many for a `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Epochs {
    /// It fits a `u64`.
    Count(u64),
    /// Only digits, but more than a `u64` holds; kept as text for the error.
    Huge(String),
}

/// What a read asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReadParams {
    /// `strict_consistency_check=true`: re-encode the blob and check it
    /// against the blob ID before answering.
    pub strict: bool,
}

/// The parameters `PUT /v1/blobs` takes.
pub(crate) const STORE_PARAMETERS: &[&str] = &[
    "epochs",
    "deletable",
    "permanent",
    "force",
    "encoding_type",
    "quilt_version",
    "send_object_to",
    "share",
];

/// The only encoding Floe writes.
pub(crate) const ENCODING: &str = "RedStuff";

/// Parses a store's query pairs (already percent-decoded).
pub(crate) fn store_params(pairs: &[(String, String)]) -> Result<StoreParams, GatewayError> {
    check_unique(pairs)?;
    let mut params = StoreParams::default();
    let (mut deletable, mut permanent) = (None, None);
    for (name, value) in pairs {
        match name.as_str() {
            "epochs" => params.epochs = Some(epochs(value)?),
            "deletable" => deletable = Some(boolean(name, value)?),
            "permanent" => permanent = Some(boolean(name, value)?),
            "force" => params.force = boolean(name, value)?,
            "encoding_type" => {
                if !value.eq_ignore_ascii_case(ENCODING) {
                    return Err(GatewayError::Unsupported {
                        name: name.clone(),
                        value: value.clone(),
                        message: format!(
                            "Floe encodes every blob with {ENCODING} (two-dimensional Reed–Solomon over GF(2^16), BLAKE3 commitments), which gives different blob IDs than Walrus's encodings; omit encoding_type or pass encoding_type={ENCODING}"
                        ),
                    });
                }
            }
            // Walrus documents it for its quilt routes only and ignores it
            // on this one; Floe has no quilts, so it checks the value and
            // does the same.
            "quilt_version" => {
                if !matches!(value.as_str(), "v1" | "V1" | "1") {
                    return Err(GatewayError::Unsupported {
                        name: name.clone(),
                        value: value.clone(),
                        message: "the only quilt version is v1 (and Floe has no quilts: PUT /v1/blobs stores the body as one blob); omit quilt_version".into(),
                    });
                }
            }
            "send_object_to" => {
                return Err(GatewayError::Unsupported {
                    name: name.clone(),
                    value: value.clone(),
                    message: "Floe has no chain objects to send: a stored blob is its certificate, which the answer carries; a deletable blob belongs to the gateway's owner key. Omit send_object_to".into(),
                })
            }
            "share" => {
                if boolean(name, value)? {
                    return Err(GatewayError::Unsupported {
                        name: name.clone(),
                        value: value.clone(),
                        message: "Floe has no chain objects to share: a permanent blob (the default) already stays until its end epoch for everyone. Omit share".into(),
                    });
                }
            }
            _ => {
                return Err(GatewayError::UnknownParameter {
                    name: name.clone(),
                    known: STORE_PARAMETERS,
                })
            }
        }
    }
    params.deletable = match (deletable, permanent) {
        (Some(d), Some(p)) if d == p => {
            return Err(GatewayError::BadParameter {
                name: "deletable".into(),
                message: format!(
                    "deletable={d} and permanent={p} contradict each other: a blob is either deletable or permanent; give one of them"
                ),
            })
        }
        (Some(d), _) => d,
        (None, Some(p)) => !p,
        // Floe's default: permanent (deletable blobs need the gateway's
        // owner key).
        (None, None) => false,
    };
    Ok(params)
}

/// Parses a read's query pairs; names it does not know are ignored.
pub(crate) fn read_params(pairs: &[(String, String)]) -> Result<ReadParams, GatewayError> {
    check_unique(pairs)?;
    let (mut strict, mut skip) = (false, false);
    for (name, value) in pairs {
        match name.as_str() {
            "strict_consistency_check" => strict = boolean(name, value)?,
            "skip_consistency_check" => skip = boolean(name, value)?,
            _ => {}
        }
    }
    if strict && skip {
        return Err(GatewayError::BadParameter {
            name: "skip_consistency_check".into(),
            message: "strict_consistency_check=true and skip_consistency_check=true contradict each other; give at most one".into(),
        });
    }
    if skip {
        return Err(GatewayError::Unsupported {
            name: "skip_consistency_check".into(),
            value: "true".into(),
            message: "Floe checks every read against the blob ID and cannot skip it; omit skip_consistency_check".into(),
        });
    }
    Ok(ReadParams { strict })
}

fn check_unique(pairs: &[(String, String)]) -> Result<(), GatewayError> {
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    for (name, _) in pairs {
        if !seen.insert(name.as_str()) {
            return Err(GatewayError::BadParameter {
                name: name.clone(),
                message: format!("{name} is given more than once; give it once"),
            });
        }
    }
    Ok(())
}

fn boolean(name: &str, value: &str) -> Result<bool, GatewayError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(GatewayError::BadParameter {
            name: name.to_owned(),
            message: format!("{name}={value:?} is not a boolean: give {name}=true or {name}=false"),
        }),
    }
}

fn epochs(value: &str) -> Result<Epochs, GatewayError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(match value.parse::<u64>() {
            Ok(n) => Epochs::Count(n),
            Err(_) => Epochs::Huge(value.chars().take(40).collect()),
        });
    }
    Err(GatewayError::BadParameter {
        name: "epochs".into(),
        message: format!(
            "epochs={:?} is not a number of epochs: give a whole number, at least 1",
            value.chars().take(40).collect::<String>()
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn store_parameters() {
        assert_eq!(store_params(&[]).unwrap(), StoreParams::default());
        let p = store_params(&pairs(&[("epochs", "7"), ("permanent", "false")])).unwrap();
        assert_eq!(p.epochs, Some(Epochs::Count(7)));
        assert!(p.deletable);
        let p = store_params(&pairs(&[("epochs", "99999999999999999999999")])).unwrap();
        assert!(matches!(p.epochs, Some(Epochs::Huge(_))));
        assert!(store_params(&pairs(&[("encoding_type", "redstuff")])).is_ok());
        for bad in [
            &[("epochs", "-1")][..],
            &[("epochs", "")],
            &[("epochs", "3"), ("epochs", "4")],
            &[("encoding_type", "RS2")],
            &[("deletable", "yes")],
            &[("deletable", "true"), ("permanent", "true")],
            &[("deletable", "false"), ("permanent", "false")],
            &[("send_object_to", "0x1")],
            &[("share", "true")],
            &[("quilt_version", "v2")],
            &[("epoch", "3")],
        ] {
            assert!(store_params(&pairs(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_parameters() {
        assert!(!read_params(&[]).unwrap().strict);
        assert!(
            read_params(&pairs(&[("strict_consistency_check", "true")]))
                .unwrap()
                .strict
        );
        assert!(read_params(&pairs(&[("v", "2")])).is_ok());
        assert!(read_params(&pairs(&[("skip_consistency_check", "false")])).is_ok());
        assert!(read_params(&pairs(&[("skip_consistency_check", "true")])).is_err());
        assert!(read_params(&pairs(&[("strict_consistency_check", "1")])).is_err());
    }
}
