//! Prometheus metrics: requests by endpoint and status, and latency histograms with
//! Trustee's bucket range (0.5 ms to 1 s).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<EndpointLabels, Histogram>,
    pub sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kbs");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ])
        });
        let sessions = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by endpoint and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by endpoint",
            latency.clone(),
        );
        registry.register("sessions", "Open RCAR sessions", sessions.clone());
        Metrics {
            registry,
            requests,
            latency,
            sessions,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).ok();
        out
    }
}

/// The endpoint label of a path: the segment after `/kbs/v0/`, or the path itself for
/// `/healthz` and `/metrics`; anything else is "other" (bounded label values).
pub fn endpoint(path: &str) -> String {
    let name = match path.strip_prefix("/kbs/v0/") {
        Some(rest) => rest.split('/').next().unwrap_or(""),
        None => path.trim_start_matches('/'),
    };
    match name {
        "auth" | "attest" | "resource" | "resource-policy" | "attestation-policy"
        | "reference-value" | "healthz" | "metrics" => name.to_string(),
        _ => "other".into(),
    }
}
