//! Prometheus metrics, served on the REST port in the text exposition
//! format at TF Serving's path, `/monitoring/prometheus/metrics`.
//!
//! Counters and histograms are recorded where things happen (requests in
//! [`crate::routing`], loads in the lifecycle, batches by whoever runs them);
//! per-version gauges (state, instances, queue depth) are handed to
//! [`render`] at scrape time by [`crate::frontends::monitoring`], so a
//! version that goes away leaves no stale series behind. It imports only
//! the config readers and the protobuf types.
//!
//! `--monitoring_config_file` takes TF Serving's `MonitoringConfig` in
//! protobuf text format; without it metrics are on at the default path.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, bail};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, TextEncoder,
};

/// TF Serving's default metrics path.
pub const DEFAULT_PATH: &str = "/monitoring/prometheus/metrics";

struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    batch_size: HistogramVec,
    run_seconds: HistogramVec,
    phase_seconds: HistogramVec,
    load_seconds: GaugeVec,
    state: IntGaugeVec,
    instances: IntGaugeVec,
    busy: IntGaugeVec,
    queue_depth: IntGaugeVec,
}

const VERSION_LABELS: [&str; 2] = ["model", "version"];
const REQUEST_LABELS: [&str; 4] = ["model", "version", "api", "status"];

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = prometheus::Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "vitrine_requests_total",
            "Inference requests (predict, infer, classify) by model, version, API and canonical status",
        ),
        &REQUEST_LABELS,
    )
    .expect("valid metric");
    let latency = histogram(
        "vitrine_request_duration_seconds",
        "Inference request latency in seconds, from routing to the model's reply",
        &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ],
        &REQUEST_LABELS,
    );
    let batch_size = histogram(
        "vitrine_batch_size",
        "Images per model execution",
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
        &VERSION_LABELS,
    );
    // TF Serving's runtime latency: the model's execution alone, so a
    // dashboard shows what serving adds to it.
    let run_seconds = histogram(
        "vitrine_model_run_duration_seconds",
        "Time of one native model execution (a whole batch), in seconds",
        &[
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ],
        &VERSION_LABELS,
    );
    // KServe's preprocess/predict/postprocess latencies, finer: each wait
    // between the front end and the engine is a phase of its own.
    let phase_seconds = histogram(
        "vitrine_request_phase_seconds",
        "Where an inference request's time goes on its instance, in seconds, by phase: \
         queue (waiting for a free instance), start (handing the request to it), \
         preprocess (the guest reads, decodes and preprocesses it), \
         engine_queue (waiting for the native engine: a run slot or the batch window), \
         engine_run, engine_return (back to the guest), postprocess (the guest's reply); \
         on the guest path, guest replaces the five from preprocess on",
        &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ],
        &["model", "version", "phase"],
    );
    let load_seconds = GaugeVec::new(
        Opts::new(
            "vitrine_model_load_seconds",
            "Time a model version took to load and warm up, in seconds",
        ),
        &VERSION_LABELS,
    )
    .expect("valid metric");
    let state = IntGaugeVec::new(
        Opts::new(
            "vitrine_model_state",
            "1 for the state each model version is in (LOADING, AVAILABLE or END)",
        ),
        &["model", "version", "state"],
    )
    .expect("valid metric");
    let instances = IntGaugeVec::new(
        Opts::new(
            "vitrine_instances",
            "Warm component instances per available model version",
        ),
        &VERSION_LABELS,
    )
    .expect("valid metric");
    let busy = IntGaugeVec::new(
        Opts::new(
            "vitrine_instances_busy",
            "Component instances running a request now",
        ),
        &VERSION_LABELS,
    )
    .expect("valid metric");
    let queue_depth = IntGaugeVec::new(
        Opts::new(
            "vitrine_queue_depth",
            "Requests waiting for a busy instance",
        ),
        &VERSION_LABELS,
    )
    .expect("valid metric");
    for collector in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(latency.clone()),
        Box::new(batch_size.clone()),
        Box::new(run_seconds.clone()),
        Box::new(phase_seconds.clone()),
        Box::new(load_seconds.clone()),
        Box::new(state.clone()),
        Box::new(instances.clone()),
        Box::new(busy.clone()),
        Box::new(queue_depth.clone()),
    ] {
        registry
            .register(collector)
            .expect("metric names are unique");
    }
    Metrics {
        registry,
        requests,
        latency,
        batch_size,
        run_seconds,
        phase_seconds,
        load_seconds,
        state,
        instances,
        busy,
        queue_depth,
    }
});

fn histogram(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric")
}

fn version_label(version: Option<u64>) -> String {
    version.map(|v| v.to_string()).unwrap_or_default()
}

/// Counts one inference request and records its latency. `version` is
/// `None` when no version was resolved; `api` is the front end's label;
/// `status` is a canonical code name.
pub fn record_request(
    model: &str,
    version: Option<u64>,
    api: &str,
    status: &str,
    elapsed: Duration,
) {
    let version = version_label(version);
    let labels = [model, version.as_str(), api, status];
    METRICS.requests.with_label_values(&labels).inc();
    METRICS
        .latency
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
}

/// Records one model execution over `size` images (a guest's, whose
/// duration the host does not see).
pub fn record_batch(model: &str, version: u64, size: usize) {
    METRICS
        .batch_size
        .with_label_values(&[model, &version.to_string()])
        .observe(size as f64);
}

/// Records one native model execution over `size` images that took `took`.
pub fn record_run(model: &str, version: u64, size: usize, took: Duration) {
    record_batch(model, version, size);
    METRICS
        .run_seconds
        .with_label_values(&[model, &version.to_string()])
        .observe(took.as_secs_f64());
}

/// Records the phases of one inference request on `version` of `model`.
pub fn record_phases(model: &str, version: u64, phases: &[(&str, Duration)]) {
    let version = version.to_string();
    for (phase, took) in phases {
        METRICS
            .phase_seconds
            .with_label_values(&[model, version.as_str(), phase])
            .observe(took.as_secs_f64());
    }
}

/// Records how long `version` of `model` took to load and warm up.
pub fn record_load(model: &str, version: u64, elapsed: Duration) {
    METRICS
        .load_seconds
        .with_label_values(&[model, &version.to_string()])
        .set(elapsed.as_secs_f64());
}

/// Drops every series of `version` of `model`, once it is unloaded: each
/// version's requests, latencies, batches and load time would otherwise be
/// kept, and rendered, for the life of the server (2.4 KB of text and about
/// 17 KB of heap per swap, measured over 60 swaps).
pub fn forget_version(model: &str, version: u64) {
    let version = version.to_string();
    let m = &*METRICS;
    let _ = m.batch_size.remove_label_values(&[model, &version]);
    let _ = m.run_seconds.remove_label_values(&[model, &version]);
    let _ = m.load_seconds.remove_label_values(&[model, &version]);
    // The request series are one per API and status seen, the phase
    // series one per phase seen; read them back.
    for labels in series_of(&m.requests, model, &version, &["api", "status"]) {
        let labels = [
            model,
            version.as_str(),
            labels[0].as_str(),
            labels[1].as_str(),
        ];
        let _ = m.requests.remove_label_values(&labels);
        let _ = m.latency.remove_label_values(&labels);
    }
    for labels in series_of(&m.phase_seconds, model, &version, &["phase"]) {
        let _ = m
            .phase_seconds
            .remove_label_values(&[model, version.as_str(), labels[0].as_str()]);
    }
}

/// The values of the labels `names` of each series of `collector` that
/// belongs to `version` of `model`.
fn series_of(
    collector: &dyn prometheus::core::Collector,
    model: &str,
    version: &str,
    names: &[&str],
) -> Vec<Vec<String>> {
    let mut seen = Vec::new();
    for family in collector.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            if label("model") == model && label("version") == version {
                seen.push(names.iter().map(|n| label(n)).collect());
            }
        }
    }
    seen
}

/// One model version's gauges at scrape time.
pub struct VersionGauges<'a> {
    pub model: &'a str,
    pub version: u64,
    /// `LOADING`, `AVAILABLE` or `END`.
    pub state: &'static str,
    /// `(instances, busy, queued)` of an available version's pool.
    pub pool: Option<(usize, usize, usize)>,
}

/// Everything, in the Prometheus text format, with the per-version gauges
/// set from `versions` now.
pub fn render<'a>(versions: impl IntoIterator<Item = VersionGauges<'a>>) -> String {
    let m = &*METRICS;
    m.state.reset();
    m.instances.reset();
    m.busy.reset();
    m.queue_depth.reset();
    for gauges in versions {
        let v = gauges.version.to_string();
        let model = gauges.model;
        m.state.with_label_values(&[model, &v, gauges.state]).set(1);
        if let Some((instances, busy, queued)) = gauges.pool {
            let labels = [model, v.as_str()];
            m.instances.with_label_values(&labels).set(instances as i64);
            m.busy.with_label_values(&labels).set(busy as i64);
            m.queue_depth.with_label_values(&labels).set(queued as i64);
        }
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!("cannot render the metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Where (and whether) metrics are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitoring {
    /// `None` when the monitoring config turns Prometheus off.
    pub path: Option<String>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            path: Some(DEFAULT_PATH.to_string()),
        }
    }
}

impl Monitoring {
    /// Reads `--monitoring_config_file`; without one, metrics are on at
    /// [`DEFAULT_PATH`].
    pub fn load(file: Option<&Path>) -> anyhow::Result<Monitoring> {
        let Some(file) = file else {
            return Ok(Monitoring::default());
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the monitoring config {}", file.display()))?;
        Monitoring::parse(&text).with_context(|| {
            format!(
                "{} is not a valid monitoring config; expected e.g. prometheus_config {{ enable: true, path: \"{DEFAULT_PATH}\" }}",
                file.display()
            )
        })
    }

    /// Parses TF Serving's `MonitoringConfig` text format. As in TF Serving,
    /// a config that does not say `enable: true` turns metrics off, and an
    /// empty path means the default one.
    pub fn parse(text: &str) -> anyhow::Result<Monitoring> {
        let config = vitrine_wire::textproto::monitoring_config(text)?;
        let Some(prometheus) = config.prometheus_config.filter(|p| p.enable) else {
            return Ok(Monitoring { path: None });
        };
        let path = match prometheus.path {
            p if p.is_empty() => DEFAULT_PATH.to_string(),
            p => p,
        };
        if !path.starts_with('/')
            || path.starts_with("/v1/")
            || path.starts_with("/v2/")
            || path.contains(['{', '}', '*'])
        {
            bail!(
                "the metrics path {path:?} must start with '/' and stay clear of the /v1 and /v2 APIs"
            );
        }
        Ok(Monitoring { path: Some(path) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_configs() {
        let on = |path: &str| Monitoring {
            path: Some(path.to_string()),
        };
        assert_eq!(
            Monitoring::parse(
                "prometheus_config {\n  enable: true,\n  path: \"/monitoring/prometheus/metrics\"\n}\n"
            )
            .unwrap(),
            on(DEFAULT_PATH)
        );
        assert_eq!(
            Monitoring::parse("# ours\nprometheus_config: { enable: true path: '/metrics' }")
                .unwrap(),
            on("/metrics")
        );
        assert_eq!(
            Monitoring::parse("prometheus_config { enable: true }").unwrap(),
            on(DEFAULT_PATH)
        );
        assert_eq!(
            Monitoring::parse("prometheus_config { enable: false }").unwrap(),
            Monitoring { path: None }
        );
        assert_eq!(Monitoring::parse("").unwrap(), Monitoring { path: None });
        for bad in [
            "prometheus_config { enable: yes }",
            "prometheus_config { enable: true, path: \"/v1/models\" }",
            "prometheus_config { enable: true",
            "other_config { }",
            "prometheus_config { enable: true, port: 9 }",
        ] {
            assert!(Monitoring::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_the_text_format() {
        record_request("m", Some(1), "grpc", "OK", Duration::from_millis(20));
        record_batch("m", 1, 3);
        record_run("m", 1, 2, Duration::from_millis(90));
        record_load("m", 1, Duration::from_secs(2));
        let text = render([]);
        assert!(
            text.contains(
                "vitrine_requests_total{api=\"grpc\",model=\"m\",status=\"OK\",version=\"1\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("vitrine_batch_size_sum{model=\"m\",version=\"1\"} 5"));
        assert!(text.contains(
            "vitrine_model_run_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"0.1\"} 1"
        ));
        assert!(text.contains("vitrine_model_load_seconds{model=\"m\",version=\"1\"} 2"));
    }

    #[test]
    fn an_unloaded_version_leaves_no_series() {
        record_request("gone", Some(7), "rest", "OK", Duration::from_millis(5));
        record_request("gone", Some(7), "grpc", "INVALID_ARGUMENT", Duration::ZERO);
        record_request("gone", Some(8), "rest", "OK", Duration::from_millis(5));
        record_run("gone", 7, 1, Duration::from_millis(5));
        record_load("gone", 7, Duration::from_secs(1));
        let phases = [
            ("queue", Duration::ZERO),
            ("engine_run", Duration::from_millis(5)),
        ];
        record_phases("gone", 7, &phases);
        record_phases("gone", 8, &phases);
        forget_version("gone", 7);
        let text = render([]);
        assert!(!text.contains("model=\"gone\",version=\"7\""), "{text}");
        assert!(!text.contains("phase=\"queue\",version=\"7\""), "{text}");
        assert!(
            text.contains("phase=\"engine_run\",version=\"8\""),
            "{text}"
        );
        assert!(
            !text.contains("status=\"INVALID_ARGUMENT\",version=\"7\""),
            "{text}"
        );
        assert!(
            text.contains(
                "vitrine_requests_total{api=\"rest\",model=\"gone\",status=\"OK\",version=\"8\"} 1"
            ),
            "{text}"
        );
    }
}
