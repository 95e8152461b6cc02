//! Request counts and latencies by route and method, served at `/metrics`
//! in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, Method};
use axum::response::IntoResponse;

use crate::Gateway;

/// `/metrics`: the counts and latencies in the Prometheus text format.
pub(crate) async fn render_metrics(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gateway.metrics.render(),
    )
}

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Series {
    /// Requests by status code.
    by_status: BTreeMap<u16, u64>,
    /// Cumulative counts per bucket, then the sum of seconds.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The metrics label of `method`: the standard methods by name, any
/// other as `OTHER`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Request counts and latencies by route and method.
#[derive(Default)]
pub(crate) struct Metrics {
    series: Mutex<BTreeMap<(String, String), Series>>,
}

impl Metrics {
    pub(crate) fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let entry = series
            .entry((route.to_owned(), method.to_owned()))
            .or_default();
        *entry.by_status.entry(status).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(entry.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        entry.count += 1;
        entry.sum += seconds;
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let Ok(series) = self.series.lock() else {
            return out;
        };
        let _ = writeln!(
            out,
            "# HELP floe_gateway_requests_total HTTP requests by route, method and status code.\n# TYPE floe_gateway_requests_total counter"
        );
        for ((route, method), s) in series.iter() {
            for (status, count) in &s.by_status {
                let _ = writeln!(
                    out,
                    "floe_gateway_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP floe_gateway_request_seconds HTTP request latency by route and method.\n# TYPE floe_gateway_request_seconds histogram"
        );
        for ((route, method), s) in series.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            for (bound, count) in BUCKETS.iter().zip(s.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "floe_gateway_request_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "floe_gateway_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}\nfloe_gateway_request_seconds_sum{{{labels}}} {}\nfloe_gateway_request_seconds_count{{{labels}}} {}",
                s.count, s.sum, s.count
            );
        }
        out
    }
}
