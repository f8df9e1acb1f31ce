//! Logs, traces and metrics for the whole process.
//!
//! Logs go to stdout, pretty for a developer's terminal or JSON for a collector. When an
//! OTLP endpoint is configured (`log.otlp_endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), every `tracing` span also becomes an OpenTelemetry
//! span, exported in batches over OTLP/gRPC; the batch queue is bounded, so a collector
//! that is down costs dropped spans, never unbounded memory. Trace context crosses
//! process boundaries as W3C `traceparent`: [`adopt`] makes a span the child of an
//! incoming one (HTTP header, gRPC metadata, message envelope) and
//! [`current_traceparent`] says what to send onwards. Metrics
//! are recorded through the `metrics` facade into one process-wide Prometheus recorder;
//! every series carries a `service` label, so in embedded mode (all services in one
//! process) each service's `/metrics` shows the process and the labels tell them apart.

mod recent;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use recent::{RecentSpans, SpanRecord, recent_spans};

/// How logs are written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `pretty` for humans, `json` for log collectors.
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `info,catalog=debug`.
    pub filter: String,
    /// Where to export traces over OTLP/gRPC, e.g. `http://otel-collector:4317`; the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) sets it too.
    /// Unset: spans are not exported.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of exported spans (`OTEL_SERVICE_NAME` sets it too). Each
    /// span also names its Bazaar service, since one process may run several.
    pub service_name: String,
    /// How many finished spans the process keeps in memory for the gateway's console
    /// (`/console`); 0 keeps none.
    pub recent_spans: usize,
}

/// The shape of each log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, one event per line.
    Pretty,
    /// One JSON object per line, with the span's fields.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "bazaar".to_owned(),
            recent_spans: 20_000,
        }
    }
}

/// Exports spans while it lives; flushes what is queued when dropped.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Exports every finished span now, waiting for the collector's answer.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing traces failed");
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global log subscriber and, when an OTLP endpoint is configured, the
/// trace exporter (call it inside the tokio runtime: the exporter's client lives
/// there). Returns an error if the filter does not parse or the exporter cannot be
/// built; a second call in the same process (tests) keeps the first subscriber.
pub fn init_logs(config: &LogConfig) -> anyhow::Result<Option<Tracing>> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|error| anyhow::anyhow!("log.filter {:?} is invalid: {error}", config.filter))?;
    let endpoint = config
        .otlp_endpoint
        .as_deref()
        .filter(|endpoint| !endpoint.is_empty());
    let tracing = if endpoint.is_some() || config.recent_spans > 0 {
        Some(provider(endpoint, config)?)
    } else {
        None
    };
    let otel = tracing.as_ref().map(|tracing| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(tracing.provider.tracer("bazaar"))
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let lines = log_lines();
    let result = match config.format {
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    // Colour only for a person at a terminal: piped into a file or a
                    // collector, escape codes are noise.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_filter(lines),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(lines),
            )
            .try_init(),
    };
    if result.is_err() {
        tracing::debug!("a log subscriber was already installed; keeping it");
    }
    Ok(tracing)
}

/// What log lines show: every event but flag evaluations, which are for spans; as
/// lines they would be one per request.
fn log_lines() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|metadata| {
        !(metadata.is_event() && metadata.fields().field(crate::flags::EVALUATION).is_some())
    })
}

/// The span pipeline: into the process's recent spans if it keeps them, and in batches
/// over OTLP/gRPC to `endpoint` if there is one.
fn provider(endpoint: Option<&str>, config: &LogConfig) -> anyhow::Result<Tracing> {
    use opentelemetry_otlp::WithExportConfig as _;
    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    if config.recent_spans > 0 {
        builder = builder.with_span_processor(recent::Keeper::new(config.recent_spans));
    }
    if let Some(endpoint) = endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|error| anyhow::anyhow!("the OTLP exporter to {endpoint}: {error}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(Tracing {
        provider: builder.build(),
    })
}

/// Makes `span` the child of the remote span a W3C `traceparent` names, if it is valid
/// and `span` is exported (otherwise leaves it a root), and records its trace id in its
/// `trace_id` field, if it has one, so that log lines carry it.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if let Some(parent) = traceparent.and_then(parse_traceparent) {
        let context = opentelemetry::Context::new().with_remote_span_context(parent);
        let _ = span.set_parent(context);
    }
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// The `traceparent` naming the current span, to send with outgoing work; `None` when
/// spans are not exported (then callers pass on what they received).
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Parses a version-00 W3C `traceparent`: lowercase hex, no all-zero ids.
pub fn parse_traceparent(text: &str) -> Option<SpanContext> {
    let mut fields = text.trim().split('-');
    let (version, trace_id, span_id, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if version != "00"
        || fields.next().is_some()
        || !hex(trace_id, 32)
        || !hex(span_id, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// How often the recorder folds histogram samples into their buckets when nobody
/// scrapes it.
const UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Latency buckets in seconds, from a cache hit to a slow checkout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        // The recorder keeps every histogram sample until it folds them into buckets,
        // which it does only when scraped or at upkeep: without this, a process nobody
        // scrapes grows by every request it times.
        let upkept = handle.clone();
        let started = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_PERIOD);
                    upkept.run_upkeep();
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "no metrics upkeep thread: histograms grow until scraped");
        }
        handle
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer into a shared buffer, for reading what a log layer printed.
    #[derive(Clone, Default)]
    struct Printed(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Printed {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flag_evaluations_stay_out_of_the_log_lines() {
        use crate::flags::{EvaluationContext, FlagSet, Flags};
        let printed = Printed::default();
        let writer = printed.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_filter(log_lines()),
        );
        // Everyone but the default gets a rollout's `on`: an evaluation at `info`.
        let flags = Flags::fixed(
            FlagSet::parse(
                r#"{"flags": {"rollout": {"state": "ENABLED", "variants": {"on": true, "off": false},
                   "defaultVariant": "off", "targeting": {"if": [true, "on", "off"]}}}}"#,
            )
            .expect("a valid definition"),
        );
        tracing::subscriber::with_default(subscriber, || {
            assert!(flags.boolean("rollout", &EvaluationContext::new(), false));
            tracing::info!("an order was placed");
        });
        let printed =
            String::from_utf8(printed.0.lock().expect("unpoisoned").clone()).expect("UTF-8");
        assert!(printed.contains("an order was placed"), "{printed}");
        assert!(!printed.contains("feature_flag"), "{printed}");
    }

    #[test]
    fn traceparents_parse_only_when_valid() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(valid).expect("valid");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_sampled());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} accepted");
        }
    }
}
