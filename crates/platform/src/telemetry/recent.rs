//! The most recent spans, kept in memory so that a process can show its own traces
//! without a tracing backend (the gateway's console in `bazaar up`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

/// A finished span, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRecord {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; all zeros for a root.
    pub parent_id: String,
    /// `request` or `message`, or another span's name.
    pub name: String,
    /// The Bazaar service it ran in: a request span's `service`, or the service a
    /// message's subscription belongs to (the part of its name before the first dot).
    pub service: String,
    /// What it did: `POST /orders`, `publish <kind>` or `handle <kind>`.
    pub detail: String,
    /// When it started.
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Whether it ended in an error (a 5xx answer, or a failed handling).
    pub failed: bool,
}

impl SpanRecord {
    /// Whether the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_id.bytes().all(|byte| byte == b'0')
    }
}

/// Up to a fixed number of the latest finished spans, oldest dropped first.
#[derive(Debug)]
pub struct RecentSpans {
    capacity: usize,
    spans: Mutex<VecDeque<SpanRecord>>,
}

impl RecentSpans {
    /// A store of at most `capacity` spans.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            spans: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
        }
    }

    fn push(&self, span: SpanRecord) {
        let mut spans = self.lock();
        if spans.len() == self.capacity {
            spans.pop_front();
        }
        spans.push_back(span);
    }

    /// Every span kept, oldest first.
    pub fn snapshot(&self) -> Vec<SpanRecord> {
        self.lock().iter().cloned().collect()
    }

    /// The spans of one trace, by start.
    pub fn trace(&self, trace_id: &str) -> Vec<SpanRecord> {
        let mut spans: Vec<SpanRecord> = self
            .lock()
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect();
        spans.sort_by_key(|span| span.start);
        spans
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SpanRecord>> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

static RECENT: OnceLock<Arc<RecentSpans>> = OnceLock::new();

/// The process's recent spans, if it keeps them (`log.recent_spans` above 0).
pub fn recent_spans() -> Option<Arc<RecentSpans>> {
    RECENT.get().cloned()
}

/// The span processor feeding the process's [`RecentSpans`].
#[derive(Debug)]
pub(crate) struct Keeper(Arc<RecentSpans>);

impl Keeper {
    /// The keeper of the process's store, created with `capacity` on first use.
    pub(crate) fn new(capacity: usize) -> Self {
        Self(Arc::clone(
            RECENT.get_or_init(|| Arc::new(RecentSpans::new(capacity))),
        ))
    }
}

impl SpanProcessor for Keeper {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.push(record(&span));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn record(span: &SpanData) -> SpanRecord {
    let attribute = |key: &str| -> Option<String> {
        span.attributes
            .iter()
            .find(|attribute| attribute.key.as_str() == key)
            .map(|attribute| match &attribute.value {
                Value::String(text) => text.as_str().to_owned(),
                other => other.to_string(),
            })
    };
    let service = attribute("service")
        .or_else(|| {
            attribute("subscription").and_then(|name| name.split('.').next().map(str::to_owned))
        })
        .unwrap_or_else(|| "-".to_owned());
    let detail = match (attribute("method"), attribute("path"), attribute("kind")) {
        (Some(method), Some(path), _) => format!("{method} {path}"),
        // `publish` (by the outbox relay) or `message` (handled by a consumer).
        (_, _, Some(kind)) if span.name == "message" => format!("handle {kind}"),
        (_, _, Some(kind)) => format!("{} {kind}", span.name),
        // The gateway's attempts at an upstream, the first and each retry.
        _ => match attribute("upstream").zip(attribute("attempt")) {
            Some((upstream, attempt)) => format!("{} {attempt} at {upstream}", span.name),
            None => span.name.to_string(),
        },
    };
    let status = attribute("status").and_then(|status| status.parse::<u16>().ok());
    SpanRecord {
        trace_id: span.span_context.trace_id().to_string(),
        span_id: span.span_context.span_id().to_string(),
        parent_id: span.parent_span_id.to_string(),
        name: span.name.to_string(),
        service,
        detail,
        start: span.start_time,
        duration: span
            .end_time
            .duration_since(span.start_time)
            .unwrap_or_default(),
        failed: matches!(span.status, Status::Error { .. })
            || status.is_some_and(|status| status >= 500),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: u8) -> SpanRecord {
        SpanRecord {
            trace_id: trace.to_owned(),
            span_id: format!("{id:016x}"),
            parent_id: "0000000000000000".to_owned(),
            name: "request".to_owned(),
            service: "orders".to_owned(),
            detail: "POST /".to_owned(),
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(100 - id)),
            duration: Duration::from_millis(1),
            failed: false,
        }
    }

    #[test]
    fn the_oldest_spans_go_first_and_traces_come_back_in_order() {
        let store = RecentSpans::new(3);
        for id in 1..=4 {
            store.push(span(if id % 2 == 0 { "a" } else { "b" }, id));
        }
        let kept: Vec<String> = store
            .snapshot()
            .into_iter()
            .map(|span| span.span_id)
            .collect();
        assert_eq!(kept.len(), 3);
        assert!(!kept.contains(&format!("{:016x}", 1)));
        let trace = store.trace("a");
        assert_eq!(trace.len(), 2);
        assert!(trace[0].start < trace[1].start);
        assert!(trace[0].is_root());
    }
}
