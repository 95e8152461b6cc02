//! Hostile requests over real QUIC to a real node process: a request costs
//! the node memory and time in proportion to what an honest request of its
//! kind could, never many times its size. The node runs as its own process
//! so its peak memory (`VmHWM`) and CPU time are its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_api::{ApiError, ReconcileResponse, MAX_FACTS_FRAME, MAX_SLIVER_FRAME};
use floe_consensus::{canonical_bytes, Fact, ItemId, Prefix, RangeSummary, ReconcileMessage};
use floe_net::{Access, Method, NetConfig, Pool, Raw};
use floe_node::{Limits, Tasks};
use floe_testkit::local::{self, LocalCommittee};

/// `PutPairs` with the frame written by hand.
struct RawPutPairs;
impl Method for RawPutPairs {
    const KIND: u16 = <floe_api::PutPairs as Method>::KIND;
    const NAME: &'static str = "PutPairs";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = MAX_SLIVER_FRAME;
    const MAX_RESPONSE_BYTES: u32 = 64 << 10;
    type Request = Raw;
    type Response = ();
    type Error = ApiError;
}

/// `Reconcile` with the frame written by hand.
struct RawReconcile;
impl Method for RawReconcile {
    const KIND: u16 = <floe_api::Reconcile as Method>::KIND;
    const NAME: &'static str = "Reconcile";
    const ACCESS: Access = Access::PeerOnly;
    const MAX_REQUEST_BYTES: u32 = MAX_FACTS_FRAME;
    const MAX_RESPONSE_BYTES: u32 = MAX_FACTS_FRAME;
    type Request = Raw;
    type Response = ReconcileResponse;
    type Error = ApiError;
}

/// Node 0 of a local committee, run as a `floe-node` process; the test
/// speaks as member 1 (whose node does not run) or as a client.
struct NodeProcess {
    child: Child,
    committee: LocalCommittee,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn start(nodes: usize, shards: u16) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        // Nothing in the background: the node only answers.
        let tasks = Tasks {
            sync_interval_ms: 3_600_000,
            repair_interval_ms: 3_600_000,
            gc_interval_ms: 3_600_000,
            ..Tasks::default()
        };
        let committee = local::generate(
            dir.path(),
            nodes,
            shards,
            3_600_000,
            Limits::default(),
            tasks,
        )
        .unwrap();
        let config = dir.path().join("node-0.toml");
        std::fs::write(&config, toml::to_string(&committee.configs[0]).unwrap()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_floe-node"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = NodeProcess {
            child,
            committee,
            _dir: dir,
        };
        let pool = node.pool(None);
        let started = Instant::now();
        while pool
            .call::<floe_api::GetInfo>(&node.key(), &())
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the node did not answer"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node
    }

    fn key(&self) -> floe_consensus::PublicKey {
        self.committee.network_keys[0].public()
    }

    /// A pool speaking to the node as member `member`, or as a client.
    fn pool(&self, member: Option<usize>) -> Pool {
        let key = member.map(|i| &self.committee.network_keys[i]);
        let pool = Pool::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            key,
            NetConfig::default(),
        )
        .unwrap();
        let address = self.committee.file.committee.members()[0].address.clone();
        pool.add_peer(self.key(), address).unwrap();
        pool
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The node's peak resident memory so far, in MiB.
    fn peak_mib(&self) -> f64 {
        self.status_kib("VmHWM:") as f64 / 1024.0
    }

    /// CPU time the node has used so far (user and system), in seconds, at
    /// the kernel's usual 100 ticks a second.
    fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which ends with the last ')').
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    /// Sends `frame` as method `M`, and reports what the node spent on it:
    /// the growth of its peak memory (MiB), its CPU time (s) and the wall
    /// time (s).
    async fn attack<M: Method<Request = Raw>>(
        &self,
        pool: &Pool,
        frame: Vec<u8>,
        what: &str,
    ) -> (Result<M::Response, floe_net::RpcError<M::Error>>, Cost) {
        let (peak, cpu, started) = (self.peak_mib(), self.cpu_secs(), Instant::now());
        let size = frame.len();
        let outcome = pool
            .call_with_timeout::<M>(
                &self.key(),
                &Raw(Bytes::from(frame)),
                Duration::from_secs(300),
            )
            .await;
        let cost = Cost {
            peak_growth_mib: self.peak_mib() - peak,
            cpu_secs: self.cpu_secs() - cpu,
            wall_secs: started.elapsed().as_secs_f64(),
        };
        println!(
            "{what}: {:.1} MiB request; node peak memory +{:.0} MiB, CPU {:.2} s, \
             answered in {:.2} s: {}",
            size as f64 / (1 << 20) as f64,
            cost.peak_growth_mib,
            cost.cpu_secs,
            cost.wall_secs,
            match &outcome {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            }
        );
        (outcome, cost)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Cost {
    peak_growth_mib: f64,
    cpu_secs: f64,
    wall_secs: f64,
}

fn write_uleb128(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A 256 MiB `PutPairs` frame of 22 million empty pairs (12 bytes each on
/// the wire, 96 in memory) is refused, naming the blob, before
/// anything is reserved for them: a committee has 8 shards here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_pairs_count_beyond_the_committee_is_refused_before_reserving() {
    let node = NodeProcess::start(4, 8).await;
    let blob_id = floe_codec::BlobId([7; 32]);
    let count = (MAX_SLIVER_FRAME as usize - 32 - 4) / 12;
    let mut frame = Vec::with_capacity(MAX_SLIVER_FRAME as usize);
    frame.extend(blob_id.0);
    write_uleb128(&mut frame, count as u64);
    for _ in 0..count {
        // Shard 0, pair 0, then two empty slivers (axis, index, length 0).
        frame.extend([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    }
    let (outcome, cost) = node
        .attack::<RawPutPairs>(&node.pool(None), frame, "PutPairs of 22M empty pairs")
        .await;
    // The frame itself is held (256 MiB); the pairs would be 2 GiB more.
    assert!(
        cost.peak_growth_mib < 768.0,
        "the node's peak memory grew by {:.0} MiB for a {} MiB request",
        cost.peak_growth_mib,
        MAX_SLIVER_FRAME >> 20
    );
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.contains(&blob_id.to_string())
            && error.contains(&format!("{count} sliver pairs"))
            && error.contains("at most 8"),
        "{error}"
    );
}

/// A 16 MiB `Reconcile` request of 8 million empty summaries messages (two
/// bytes each on the wire, 64 in memory) is refused as soon as its message
/// count is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_reconcile_messages_costs_bounded_memory() {
    let node = NodeProcess::start(4, 8).await;
    let count = (MAX_FACTS_FRAME as usize - 4 - 2) / 2;
    let mut frame = Vec::with_capacity(MAX_FACTS_FRAME as usize);
    write_uleb128(&mut frame, count as u64);
    for _ in 0..count {
        // Summaries(vec![])
        frame.extend([0, 0]);
    }
    // No facts, no wanted items.
    frame.extend([0, 0]);
    let (outcome, cost) = node
        .attack::<RawReconcile>(&node.pool(Some(1)), frame, "Reconcile of 8M empty messages")
        .await;
    assert!(
        cost.peak_growth_mib < 128.0,
        "the node's peak memory grew by {:.0} MiB for a 16 MiB request",
        cost.peak_growth_mib
    );
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.contains("digest messages") && error.contains("at most 2048"),
        "{error}"
    );
}

/// A page of 2048 copies of the root's summary, claiming many items: it is
/// answered once (16 child summaries), not 2048 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_sent_many_times_is_answered_once() {
    let node = NodeProcess::start(4, 8).await;
    let root = RangeSummary {
        prefix: Prefix::ROOT,
        count: u64::MAX / 2,
        digest: [9; 32],
    };
    let request = floe_api::ReconcileRequest {
        messages: vec![ReconcileMessage::Summaries(vec![root; 2048])],
        facts: Vec::new(),
        want: Vec::new(),
    };
    let frame = canonical_bytes(&request);
    let (outcome, _) = node
        .attack::<RawReconcile>(
            &node.pool(Some(1)),
            frame,
            "Reconcile of 2048 root summaries",
        )
        .await;
    let reply = outcome.unwrap();
    let ranges: usize = reply
        .messages
        .iter()
        .map(|m| match m {
            ReconcileMessage::Summaries(s) => s.len(),
            ReconcileMessage::Listing { .. } => 1,
        })
        .sum();
    assert_eq!(ranges, 16, "the root is split once into its 16 children");
}

/// A listing of one blob ID (the deepest range, listed whatever its size)
/// naming 200,000 made-up facts: refused, not diffed against what the node
/// holds and answered with 16,384 wanted items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_one_blob_with_made_up_facts_is_refused() {
    let node = NodeProcess::start(4, 8).await;
    let blob_id = floe_codec::BlobId([3; 32]);
    let items: Vec<ItemId> = (0..200_000u32)
        .map(|i| ItemId {
            blob_id,
            fact: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        })
        .collect();
    let request = floe_api::ReconcileRequest {
        messages: vec![ReconcileMessage::Listing {
            prefix: Prefix::of(&blob_id, floe_consensus::MAX_DEPTH),
            items,
        }],
        facts: Vec::new(),
        want: Vec::new(),
    };
    let frame = canonical_bytes(&request);
    let (outcome, _) = node
        .attack::<RawReconcile>(&node.pool(Some(1)), frame, "Reconcile listing 200k items")
        .await;
    match outcome {
        Ok(reply) => panic!(
            "the listing was answered: the node wants {} items",
            reply.want.len()
        ),
        Err(e) => assert!(e.to_string().contains("listed item IDs"), "{e}"),
    }
}

/// A page of 16,384 copies of one valid fact the node lacks (each with 7
/// signatures): the fact is verified and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_sent_many_times_is_verified_once() {
    let node = NodeProcess::start(10, 10).await;
    let fact: Fact = local::certified_facts(&node.committee, 1, 10).unwrap()[0]
        .fact()
        .clone();
    let request = floe_api::ReconcileRequest {
        messages: Vec::new(),
        facts: vec![fact; floe_api::RECONCILE_MAX_ITEMS],
        want: Vec::new(),
    };
    let frame = canonical_bytes(&request);
    let (outcome, cost) = node
        .attack::<RawReconcile>(
            &node.pool(Some(1)),
            frame,
            "Reconcile of 16384 copies of a fact",
        )
        .await;
    outcome.unwrap();
    // Generous: verifying the copies one by one takes seconds of CPU.
    assert!(
        cost.cpu_secs < 1.0,
        "the node spent {:.2} s of CPU on one fact sent {} times",
        cost.cpu_secs,
        floe_api::RECONCILE_MAX_ITEMS
    );
}

/// `SubmitInconsistency` with the frame written by hand.
struct RawSubmitInconsistency;
impl Method for RawSubmitInconsistency {
    const KIND: u16 = <floe_api::SubmitInconsistency as Method>::KIND;
    const NAME: &'static str = "SubmitInconsistency";
    const ACCESS: Access = Access::PeerOnly;
    const MAX_REQUEST_BYTES: u32 = MAX_SLIVER_FRAME;
    const MAX_RESPONSE_BYTES: u32 = 64 << 10;
    type Request = Raw;
    type Response = Raw;
    type Error = ApiError;
}

/// A 64 MiB inconsistency proof of 7 million empty recovery symbols (9
/// bytes each on the wire, over 100 in memory) is refused as soon as its
/// symbol count is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistency_proof_of_millions_of_symbols_costs_bounded_memory() {
    let node = NodeProcess::start(4, 8).await;
    let size = 64 << 20;
    let count = (size - 32 - 1 - 2 - 4) / 9;
    let mut frame = Vec::with_capacity(size);
    frame.extend([1; 32]);
    // Target: a primary sliver, index 0.
    frame.extend([0, 0, 0]);
    write_uleb128(&mut frame, count as u64);
    for _ in 0..count {
        // Source axis, source index, symbol index, no data, an empty proof.
        frame.extend([1, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    let (outcome, cost) = node
        .attack::<RawSubmitInconsistency>(
            &node.pool(Some(1)),
            frame,
            "SubmitInconsistency of 7M empty symbols",
        )
        .await;
    assert!(
        cost.peak_growth_mib < 192.0,
        "the node's peak memory grew by {:.0} MiB for a 64 MiB request",
        cost.peak_growth_mib
    );
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.contains(&format!("{count} recovery symbols")),
        "{error}"
    );
}
