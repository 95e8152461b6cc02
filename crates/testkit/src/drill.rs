//! Drills on a [`Testnet`]: the demo (store, status, read back with the
//! `floe` binary) and chaos (a workload while nodes are killed, restarted
//! and wiped, then a check that nothing certified was lost).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_api::BlobStatus;
use floe_client::{Client, ClientConfig, ReadOptions, StoreOptions};
use floe_codec::BlobId;
use rand::{Rng, SeedableRng};

use crate::testnet::{Testnet, TestnetError};

/// Why a drill failed.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The testnet misbehaved.
    #[error(transparent)]
    Testnet(#[from] TestnetError),
    /// A `floe` command failed or answered wrongly.
    #[error("{0}")]
    Failed(String),
}

/// Runs `floe` with `args` against `testnet`; returns its standard output.
fn floe(floe_bin: &Path, testnet: &Testnet, args: &[&str]) -> Result<String, DrillError> {
    let output = std::process::Command::new(floe_bin)
        .arg("--config")
        .arg(testnet.client_config())
        .args(args)
        .output()
        .map_err(|e| DrillError::Failed(format!("running {}: {e}", floe_bin.display())))?;
    if !output.status.success() {
        return Err(DrillError::Failed(format!(
            "`floe {}` exited with {:?}: {}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The demo: bring the testnet up, store `sample` with `floe store`, show
/// its status, read it back with `floe read`, compare, and bring the
/// testnet down. Prints each step; returns the blob ID.
pub async fn demo(
    testnet: &mut Testnet,
    floe_bin: &Path,
    sample: &Path,
) -> Result<String, DrillError> {
    let started = Instant::now();
    testnet.up(Duration::from_secs(60)).await?;
    println!(
        "testnet up: {} floe-node processes, {} shards, in {} ({:.1} s)",
        testnet.nodes(),
        testnet.file().committee.n_shards(),
        testnet.dir().display(),
        started.elapsed().as_secs_f64()
    );
    let result = demo_steps(testnet, floe_bin, sample).await;
    testnet.down()?;
    println!("testnet down");
    result
}

async fn demo_steps(
    testnet: &Testnet,
    floe_bin: &Path,
    sample: &Path,
) -> Result<String, DrillError> {
    let sample_str = sample.display().to_string();
    let config = testnet.client_config().display().to_string();
    println!("\n$ floe --config {config} store {sample_str} --epochs 5");
    let start = Instant::now();
    let stored = floe(floe_bin, testnet, &["store", &sample_str, "--epochs", "5"])?;
    let store_ms = start.elapsed().as_millis();
    print!("{stored}");
    println!("(stored in {store_ms} ms)");
    // "FILE: blob BLOB_ID" on the first line.
    let blob_id = stored
        .lines()
        .next()
        .and_then(|line| line.rsplit_once(": blob "))
        .map(|(_, id)| id.trim().to_owned())
        .ok_or_else(|| DrillError::Failed(format!("no blob ID in {stored:?}")))?;

    println!("\n$ floe status {blob_id}");
    print!("{}", floe(floe_bin, testnet, &["status", &blob_id])?);

    let copy = testnet.dir().join("demo-read-back.bin");
    let copy_str = copy.display().to_string();
    println!("\n$ floe read {blob_id} -o {copy_str} --strict");
    let start = Instant::now();
    print!(
        "{}",
        floe(
            floe_bin,
            testnet,
            &["read", &blob_id, "-o", &copy_str, "--strict"]
        )?
    );
    let read_ms = start.elapsed().as_millis();
    let original = std::fs::read(sample)
        .map_err(|e| DrillError::Failed(format!("reading {sample_str}: {e}")))?;
    let back =
        std::fs::read(&copy).map_err(|e| DrillError::Failed(format!("reading {copy_str}: {e}")))?;
    let _ = std::fs::remove_file(&copy);
    if original != back {
        return Err(DrillError::Failed(format!(
            "blob {blob_id} read back differs from {sample_str}"
        )));
    }
    println!(
        "\nread back {} bytes in {read_ms} ms: byte-identical to {sample_str}",
        back.len()
    );
    Ok(blob_id)
}

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// How long the workload and the faults run.
    pub duration: Duration,
    /// A fault every this often.
    pub fault_every: Duration,
    /// Largest blob stored (sizes are drawn up to it).
    pub max_blob: usize,
    /// Seed of the random choices (blobs, faults).
    pub seed: u64,
    /// How long the network gets to converge after the faults.
    pub settle: Duration,
    /// Members made hostile for the whole run (the last ones; together
    /// they hold at most `f` shards): they lie with foreign proofs,
    /// flipped slivers and oversized listings. Their shards count against
    /// the fault budget, and the end check asks only honest nodes.
    pub byzantine: usize,
    /// Epochs each blob is stored for.
    pub store_epochs: u64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(60),
            fault_every: Duration::from_secs(3),
            max_blob: 256 << 10,
            seed: 1,
            settle: Duration::from_secs(120),
            byzantine: 0,
            store_epochs: 10,
        }
    }
}

/// What a chaos run saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    /// Stores that returned a certificate.
    pub stores: u64,
    /// Stores that failed (allowed: a store may lose its race with a fault).
    pub store_errors: u64,
    /// Reads that returned the right bytes.
    pub reads: u64,
    /// Reads that failed with an error (allowed while nodes are down).
    pub read_errors: u64,
    /// Reads that returned wrong bytes (never allowed).
    pub wrong_bytes: u64,
    /// Nodes killed (SIGKILL).
    pub kills: u64,
    /// Nodes restarted (SIGTERM, then started).
    pub restarts: u64,
    /// Nodes whose database was deleted before restarting.
    pub wipes: u64,
    /// Certified blobs checked at the end: certified on every node, read
    /// back byte-identical.
    pub blobs_verified: u64,
    /// Certified blobs that failed that check (never allowed).
    pub blobs_lost: u64,
    /// Largest share of shards down at once (hostile members' included).
    pub max_shards_down: u32,
    /// Hostile members for the whole run.
    pub hostile_members: u64,
    /// Answers the workload's client proved false and reported (a proof
    /// about another blob, a sliver failing its metadata, ...).
    pub lies_named: u64,
    /// Committee changes carried out and settled (the epochs drill).
    pub epoch_changes: u64,
    /// The first failed stores' and reads' errors, for a failure's reader
    /// (at most [`ERRORS_KEPT`]).
    pub errors: Vec<String>,
}

/// Failed stores and reads whose errors a [`Tally`] keeps.
pub const ERRORS_KEPT: usize = 5;

impl Tally {
    fn keep_error(&mut self, what: &str, error: impl std::fmt::Display) {
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push(format!("{what}: {error}"));
        }
    }
}

impl Tally {
    /// Whether the run lost nothing and returned no wrong byte.
    pub fn passed(&self) -> bool {
        self.blobs_lost == 0 && self.wrong_bytes == 0
    }
}

/// Runs a workload of stores and reads on `testnet` while killing,
/// restarting and wiping random nodes (never more than `f` shards down at
/// once), then checks every blob the workload saw certified.
pub async fn chaos(testnet: &mut Testnet, config: &ChaosConfig) -> Result<Tally, DrillError> {
    let committee = testnet.file().committee.clone();
    let f = u32::from(committee.n_shards().saturating_sub(1) / 3);
    let weight = |node: usize| committee.members()[node].shards.len() as u32;
    let hostile: BTreeSet<usize> = (0..testnet.nodes()).rev().take(config.byzantine).collect();
    let hostile_weight: u32 = hostile.iter().map(|n| weight(*n)).sum();
    if hostile.len() < config.byzantine || hostile_weight > f {
        return Err(DrillError::Failed(format!(
            "{} hostile members would hold {hostile_weight} shards; at most f = {f} may be faulty",
            config.byzantine
        )));
    }
    for &node in &hostile {
        testnet.set_byzantine(node, Some(floe_node::Byzantine::all()))?;
    }
    testnet.up(Duration::from_secs(60)).await?;
    let client_config = ClientConfig {
        read_hedge_after: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let client = Arc::new(
        Client::new(testnet.file(), client_config)
            .map_err(|e| DrillError::Failed(e.to_string()))?,
    );
    let certified: Arc<Mutex<Vec<(BlobId, Bytes)>>> = Arc::default();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let workload = tokio::spawn(workload(
        Arc::clone(&client),
        Arc::clone(&certified),
        Arc::clone(&tally),
        Arc::clone(&stop),
        config.clone(),
    ));

    // Faults, from this task, among honest nodes: hostile ones count as down.
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut repairing: BTreeSet<usize> = BTreeSet::new();
    let end = Instant::now() + config.duration;
    while Instant::now() < end {
        tokio::time::sleep(config.fault_every).await;
        if !down.is_empty() && rng.gen_bool(0.5) {
            let node = *down.iter().nth(rng.gen_range(0..down.len())).unwrap_or(&0);
            tokio::task::block_in_place(|| testnet.start(node))?;
            down.remove(&node);
            continue;
        }
        // A wiped node is faulty until it has repaired what it lost: two
        // wiped at once with hostile members would be more than f shards
        // missing, which no protocol survives.
        let mut still_repairing = BTreeSet::new();
        for &node in &repairing {
            let member = &committee.members()[node];
            if !client.info(member).await.is_ok_and(|i| i.drift == 0) {
                still_repairing.insert(node);
            }
        }
        repairing = still_repairing;
        let down_weight: u32 =
            down.union(&repairing).map(|n| weight(*n)).sum::<u32>() + hostile_weight;
        let candidates: Vec<usize> = (0..testnet.nodes())
            .filter(|n| {
                !down.contains(n)
                    && !repairing.contains(n)
                    && !hostile.contains(n)
                    && down_weight + weight(*n) <= f
            })
            .collect();
        if candidates.is_empty() {
            continue;
        }
        let node = candidates[rng.gen_range(0..candidates.len())];
        let action = rng.gen_range(0..3);
        let mut t = tally
            .lock()
            .map_err(|_| DrillError::Failed("tally poisoned".into()))?;
        t.max_shards_down = t.max_shards_down.max(down_weight + weight(node));
        match action {
            0 => {
                tokio::task::block_in_place(|| testnet.stop(node, true))?;
                down.insert(node);
                t.kills += 1;
            }
            1 => {
                tokio::task::block_in_place(|| {
                    testnet.stop(node, false).and_then(|()| testnet.start(node))
                })?;
                t.restarts += 1;
            }
            _ => {
                tokio::task::block_in_place(|| testnet.wipe(node))?;
                repairing.insert(node);
                t.wipes += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = workload.await;

    // Everyone back; then every certified blob must be certified on every
    // node, repaired everywhere (drift 0), and read back byte-identical.
    testnet.up(Duration::from_secs(60)).await?;
    let blobs = certified.lock().map(|b| b.clone()).unwrap_or_default();
    // Only honest nodes are asked: a hostile one may say anything.
    let members: Vec<_> = testnet
        .file()
        .committee
        .members()
        .iter()
        .enumerate()
        .filter(|(i, _)| !hostile.contains(i))
        .map(|(_, m)| m.clone())
        .collect();
    let deadline = Instant::now() + config.settle;
    loop {
        let mut converged = true;
        for member in &members {
            let drift = client
                .info(member)
                .await
                .map(|i| i.drift)
                .unwrap_or(u64::MAX);
            if drift != 0 {
                converged = false;
                break;
            }
            for (blob_id, _) in &blobs {
                let certified_here = matches!(
                    client.node_status(member, *blob_id).await.map(|a| a.status),
                    Ok(BlobStatus::Certified { .. })
                );
                if !certified_here {
                    converged = false;
                    break;
                }
            }
            if !converged {
                break;
            }
        }
        if converged || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Drift is a node's, not a blob's: one look per node. A node left with
    // drift means a blob it should hold is not repaired, so none passes.
    let mut repaired = true;
    for member in &members {
        repaired &= client.info(member).await.is_ok_and(|i| i.drift == 0);
    }
    let mut verified = 0;
    let mut lost = 0;
    for (blob_id, data) in &blobs {
        let mut ok = repaired
            && client
                .read(*blob_id, ReadOptions::default())
                .await
                .is_ok_and(|back| back == *data);
        for member in &members {
            ok &= matches!(
                client.node_status(member, *blob_id).await.map(|a| a.status),
                Ok(BlobStatus::Certified { .. })
            );
        }
        if ok {
            verified += 1;
        } else {
            lost += 1;
        }
    }
    let mut tally = tally
        .lock()
        .map(|t| t.clone())
        .map_err(|_| DrillError::Failed("tally poisoned".into()))?;
    tally.blobs_verified = verified;
    tally.blobs_lost = lost;
    tally.hostile_members = hostile.len() as u64;
    tally.lies_named = client.health().iter().map(|h| h.misbehaviours).sum();
    tally.max_shards_down = tally.max_shards_down.max(hostile_weight);
    Ok(tally)
}

pub(crate) async fn workload(
    client: Arc<Client>,
    certified: Arc<Mutex<Vec<(BlobId, Bytes)>>>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    config: ChaosConfig,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let count = |f: &dyn Fn(&mut Tally)| {
        if let Ok(mut t) = tally.lock() {
            f(&mut t);
        }
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let len = rng.gen_range(1..=config.max_blob.max(1));
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        let data = Bytes::from(data);
        match client
            .store(data.clone(), config.store_epochs, StoreOptions::default())
            .await
        {
            Ok(outcome) => {
                count(&|t| t.stores += 1);
                if let Ok(mut c) = certified.lock() {
                    c.push((outcome.blob_id, data));
                }
            }
            Err(e) => count(&|t| {
                t.store_errors += 1;
                t.keep_error("store", &e);
            }),
        }
        let pick = certified
            .lock()
            .ok()
            .and_then(|c| (!c.is_empty()).then(|| c[rng.gen_range(0..c.len())].clone()));
        if let Some((blob_id, data)) = pick {
            match client.read(blob_id, ReadOptions::default()).await {
                Ok(back) if back == data => count(&|t| t.reads += 1),
                Ok(_) => count(&|t| t.wrong_bytes += 1),
                Err(e) => count(&|t| {
                    t.read_errors += 1;
                    t.keep_error(&format!("read of {blob_id}"), &e);
                }),
            }
        }
    }
}
