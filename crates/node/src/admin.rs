//! The admin HTTP port: `/metrics` (Prometheus text format), `/health`,
//! and the committee change: `GET /committee` (the chain and the approved
//! proposals) and `POST /committee/approve` (a proposal as TOML).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use floe_net::StatsHandle;
use tokio::sync::watch;

use crate::state::Inner;

pub(crate) async fn serve(
    address: SocketAddr,
    inner: Arc<Inner>,
    stats: StatsHandle,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/committee", get(committee))
        .route("/committee/approve", axum::routing::post(approve))
        .with_state((inner, stats));
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "admin port stopped");
        }
    }))
}

type AppState = (Arc<Inner>, StatsHandle);

async fn health(State((inner, _)): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "node_id": inner.node_id,
        "epoch": inner.epoch().0,
        "drift": inner.store.drift_count(),
        "shards": inner.my_shards().len(),
    }))
}

/// The chain's latest committee, the current one, and what this node's
/// operator approved.
async fn committee(State((inner, _)): State<AppState>) -> impl IntoResponse {
    let epoch = inner.epoch();
    let (latest, links) = inner
        .chain
        .lock()
        .map(|c| (c.latest_epoch().0, c.links().count()))
        .unwrap_or_default();
    let current = inner.committee(epoch);
    let next = inner.committee(floe_consensus::Epoch(epoch.0 + 1));
    let names = |c: &floe_consensus::Committee| -> Vec<serde_json::Value> {
        c.members()
            .iter()
            .map(|m| serde_json::json!({"node_id": m.node_id.0, "shards": m.shards.len()}))
            .collect()
    };
    let approved: Vec<serde_json::Value> = inner
        .approved
        .lock()
        .map(|a| {
            a.iter()
                .map(|(digest, p)| serde_json::json!({"proposal": hex::encode(digest), "epoch": p.epoch.0}))
                .collect()
        })
        .unwrap_or_default();
    let handoff = crate::migration::handoff(&inner, inner.latest_change(epoch));
    let synced: Vec<String> = handoff
        .synced_members()
        .map(|m| m.node_id.0.clone())
        .collect();
    let migration = serde_json::json!({
        "epoch": handoff.epoch().0,
        "moved_shards": handoff.moves().len(),
        "done": handoff.is_done(),
        "synced_shards": handoff.synced_weight(),
        "needed_shards": handoff.next().quorum_threshold(),
        "synced": synced,
        "fetching_here": inner.shards_fetching().iter().map(|s| s.0).collect::<Vec<_>>(),
    });
    Json(serde_json::json!({
        "epoch": epoch.0,
        "migration": migration,
        "latest_change": latest,
        "certified_changes": links,
        "committee": names(&current),
        "next_committee": names(&next),
        "approved": approved,
    }))
}

/// Approves a proposal of the next committee (TOML in the body); the node
/// signs it for its peers and tries to certify it.
async fn approve(State((inner, _)): State<AppState>, body: String) -> impl IntoResponse {
    use axum::http::StatusCode;
    let proposal: floe_consensus::chain::CommitteeProposal = match toml::from_str(&body) {
        Ok(proposal) => proposal,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": format!("the proposal does not parse: {e}")})),
            )
        }
    };
    match crate::handover::approve(&inner, proposal) {
        Ok(digest) => {
            let inner = Arc::clone(&inner);
            tokio::spawn(async move { crate::handover::certify_approved(&inner).await });
            (
                StatusCode::OK,
                Json(serde_json::json!({"approved": hex::encode(digest)})),
            )
        }
        Err(e) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": e.to_string()})),
        ),
    }
}

async fn metrics(State((inner, server_stats)): State<AppState>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || render(&inner, &server_stats))
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

fn render(inner: &Inner, server: &StatsHandle) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: f64| vec![(String::new(), value)];
    let m = &inner.metrics;
    metric(
        "floe_epoch",
        "gauge",
        "The node's current epoch.",
        &one(inner.epoch().0 as f64),
    );
    metric(
        "floe_shards",
        "gauge",
        "Shards this node holds.",
        &one(inner.my_shards().len() as f64),
    );
    metric(
        "floe_drift_blobs",
        "gauge",
        "Certified blobs whose slivers this node is missing (the repair backlog); goes to zero by itself.",
        &one(inner.store.drift_count() as f64),
    );
    let facts = inner.digest.lock().map(|d| d.len()).unwrap_or(0);
    metric(
        "floe_facts_known",
        "gauge",
        "Certificates, invalid-blob certificates and deletions known.",
        &one(facts as f64),
    );
    let stored = inner.store.stored_bytes().unwrap_or(0);
    metric(
        "floe_stored_bytes",
        "gauge",
        "Bytes on disk: every table and the sliver pair files.",
        &one(stored as f64),
    );
    let counter = |value: &std::sync::atomic::AtomicU64| one(value.load(Ordering::Relaxed) as f64);
    metric(
        "floe_repair_slivers_total",
        "counter",
        "Slivers rebuilt by repair.",
        &counter(&m.slivers_repaired),
    );
    // Read before the fetched bytes, which are added to first, and with
    // Acquire (paired with repair's Release): a scrape never shows more
    // dropped than fetched.
    let dropped = one(m.repair_bytes_dropped.load(Ordering::Acquire) as f64);
    metric(
        "floe_repair_fetched_bytes_total",
        "counter",
        "Bytes of recovery symbols fetched by repair (their proofs apart).",
        &counter(&m.repair_bytes_fetched),
    );
    metric(
        "floe_repair_fetched_proof_bytes_total",
        "counter",
        "Bytes of the proofs of the recovery symbols repair fetched.",
        &counter(&m.repair_proof_bytes_fetched),
    );
    metric(
        "floe_repair_dropped_bytes_total",
        "counter",
        "Bytes of bare recovery symbols repair fetched from peers that do not hold their source sliver, dropped unread (part of floe_repair_fetched_bytes_total).",
        &dropped,
    );
    metric(
        "floe_repair_proven_rounds_total",
        "counter",
        "Repair rounds that asked for proven recovery symbols because bare ones did not rebuild every target (a sender lied, the blob is inconsistent, or too few answered).",
        &counter(&m.repair_proven_rounds),
    );
    metric(
        "floe_migration_fetched_bytes_total",
        "counter",
        "Bytes of pairs fetched from previous holders of shards new to this node at a committee change.",
        &counter(&m.migration_bytes_fetched),
    );
    metric(
        "floe_migration_fetched_pairs_total",
        "counter",
        "Pairs fetched from previous holders and stored.",
        &counter(&m.migration_pairs_fetched),
    );
    metric(
        "floe_migration_shards_pending",
        "gauge",
        "Shards new to this node still fetched from their previous holder.",
        &one(inner.shards_fetching().len() as f64),
    );
    let usage = inner.admission.usage();
    metric(
        "floe_admission_usage_bytes",
        "gauge",
        "Blob bytes each client key holds stored on this node under its grant (grants mode), counted until each blob expires or is deleted.",
        &usage
            .iter()
            .map(|(key, bytes, _)| (format!("{{client=\"{key}\"}}"), *bytes as f64))
            .collect::<Vec<_>>(),
    );
    metric(
        "floe_admission_grant_bytes",
        "gauge",
        "The bytes of the live grant each client key presented (grants mode).",
        &usage
            .iter()
            .filter_map(|(key, _, limit)| {
                limit.map(|l| (format!("{{client=\"{key}\"}}"), l as f64))
            })
            .collect::<Vec<_>>(),
    );
    metric(
        "floe_facts_received_total",
        "counter",
        "Facts learned from clients and peers.",
        &counter(&m.facts_received),
    );
    metric(
        "floe_sync_rounds_total",
        "counter",
        "Anti-entropy rounds with peers.",
        &counter(&m.sync_rounds),
    );
    metric(
        "floe_inconsistencies_found_total",
        "counter",
        "Blobs this node's repair proved inconsistently encoded.",
        &counter(&m.inconsistencies_found),
    );
    let requests: Vec<(String, f64)> = m
        .requests
        .lock()
        .map(|r| {
            r.iter()
                .map(|((kind, outcome), n)| {
                    (
                        format!("{{kind=\"{kind}\",outcome=\"{outcome}\"}}"),
                        *n as f64,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    metric(
        "floe_requests_total",
        "counter",
        "Requests served, by kind and outcome.",
        &requests,
    );
    let health = inner.pool.health();
    let peer = |h: &floe_net::PeerHealth| format!("{{peer=\"{}\"}}", h.peer.address);
    metric(
        "floe_peer_up",
        "gauge",
        "1 if the last call to the peer succeeded.",
        &health
            .iter()
            .map(|h| {
                (
                    peer(h),
                    if h.consecutive_failures == 0 {
                        1.0
                    } else {
                        0.0
                    },
                )
            })
            .collect::<Vec<_>>(),
    );
    metric(
        "floe_peer_consecutive_failures",
        "gauge",
        "Failed calls to the peer since its last success.",
        &health
            .iter()
            .map(|h| (peer(h), f64::from(h.consecutive_failures)))
            .collect::<Vec<_>>(),
    );
    metric(
        "floe_peer_rtt_seconds",
        "gauge",
        "Round-trip time to the peer.",
        &health
            .iter()
            .filter_map(|h| h.rtt.map(|rtt| (peer(h), rtt.as_secs_f64())))
            .collect::<Vec<_>>(),
    );
    let wire = server.stats();
    let outcomes: Vec<(String, f64)> = [
        ("ok", &wire.ok),
        ("failed", &wire.failed),
        ("refused", &wire.refused),
        ("bad_request", &wire.bad_request),
        ("unavailable", &wire.unavailable),
        ("cancelled", &wire.cancelled),
    ]
    .into_iter()
    .map(|(outcome, n)| {
        (
            format!("{{outcome=\"{outcome}\"}}"),
            n.load(Ordering::Relaxed) as f64,
        )
    })
    .collect();
    metric(
        "floe_net_requests_total",
        "counter",
        "Requests by wire outcome.",
        &outcomes,
    );
    metric(
        "floe_net_connections_total",
        "counter",
        "Connections accepted.",
        &counter(&wire.connections),
    );
    metric(
        "floe_net_received_bytes_total",
        "counter",
        "Request body bytes received.",
        &counter(&wire.bytes_in),
    );
    metric(
        "floe_net_sent_bytes_total",
        "counter",
        "Response body bytes sent.",
        &counter(&wire.bytes_out),
    );
    metric(
        "floe_net_busy_total",
        "counter",
        "Requests answered busy: no budget or request slot in time.",
        &counter(&wire.busy),
    );
    metric(
        "floe_net_connections_refused_total",
        "counter",
        "Connections refused or closed at once (too many handshakes, client connections, or connections under one member key).",
        &counter(&wire.connections_refused),
    );
    metric(
        "floe_net_retries_total",
        "counter",
        "Connection attempts asked to validate their address (QUIC Retry).",
        &counter(&wire.retries),
    );
    metric(
        "floe_net_write_timeouts_total",
        "counter",
        "Answers abandoned because the caller did not read them in time.",
        &counter(&wire.write_timeouts),
    );
    metric(
        "floe_net_handler_timeouts_total",
        "counter",
        "Requests stopped at their handler deadline.",
        &counter(&wire.handler_timeouts),
    );
    metric(
        "floe_net_inflight_requests",
        "gauge",
        "Requests being served.",
        &one(server.inflight() as f64),
    );
    out
}
