//! One checkout is one trace: with spans exported over OTLP (here to a receiver in the
//! test), a checkout placed with a client's `traceparent` produces spans in the
//! gateway, orders, cart, catalog, inventory, payments and notifications, across HTTP,
//! gRPC and the bus, all in the client's trace and each the child of another of them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{checkout, shop_in_process, sign_up};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;

/// An OTLP/gRPC trace receiver keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("unpoisoned");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
        .and_then(|value| match value {
            AnyValue::StringValue(text) => Some(text.clone()),
            _ => None,
        })
}

/// The Bazaar service a span belongs to: a request span names it; a message span
/// names its subscription, which starts with the consuming service.
fn service_of(span: &Span) -> Option<String> {
    attribute(span, "service").or_else(|| {
        attribute(span, "subscription").and_then(|name| name.split('.').next().map(str::to_owned))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_is_one_trace_across_every_service() {
    let receiver = Receiver::default();
    let (listener, collector) = test_support::bind().await;
    let router = platform::grpc::mount(
        axum::Router::new(),
        TraceServiceServer::new(receiver.clone()),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let tracing = platform::telemetry::init_logs(&platform::telemetry::LogConfig {
        filter: "info".to_owned(),
        otlp_endpoint: Some(format!("http://{collector}")),
        ..platform::telemetry::LogConfig::default()
    })
    .expect("tracing starts")
    .expect("spans are exported");

    let folder = tempfile::tempdir().expect("a folder");
    let (shop, shutdown, gateway) = shop_in_process(folder.path()).await;
    let client = reqwest::Client::new();
    let buyer = sign_up(&client, &gateway, folder.path(), 1).await;

    // The client starts the trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let order = checkout(
        &client,
        &gateway,
        &buyer,
        &[
            ("traceparent", &traceparent),
            ("idempotency-key", "traced-checkout"),
        ],
    )
    .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");
    assert_eq!(order["trace_id"], trace_id, "the order names its trace");

    // The confirmation email is the last hop; wait until its span has been exported.
    let mut services = BTreeSet::new();
    let mut trace: Vec<Span> = Vec::new();
    for _ in 0..100 {
        tracing.flush();
        trace = receiver
            .spans
            .lock()
            .expect("unpoisoned")
            .iter()
            .filter(|span| hex(&span.trace_id) == trace_id)
            .cloned()
            .collect();
        services = trace.iter().filter_map(service_of).collect();
        if services.contains("notifications") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.trigger();
    shop.wait().await.expect("a clean stop");

    let expected: BTreeSet<String> = [
        "gateway",
        "orders",
        "cart",
        "catalog",
        "inventory",
        "payments",
        "notifications",
    ]
    .iter()
    .map(|service| (*service).to_owned())
    .collect();
    assert!(
        expected.is_subset(&services),
        "the trace covers {services:?}, not all of {expected:?}"
    );

    // One tree: every span's parent is the client's span or another span of the trace.
    let ids: BTreeSet<String> = trace.iter().map(|span| hex(&span.span_id)).collect();
    let mut by_parent: BTreeMap<String, usize> = BTreeMap::new();
    for span in &trace {
        let parent = hex(&span.parent_span_id);
        assert!(
            parent == client_span || ids.contains(&parent),
            "span {} ({:?}) hangs from {parent}, outside the trace",
            span.name,
            service_of(span)
        );
        *by_parent.entry(parent).or_default() += 1;
    }
    assert_eq!(
        by_parent.get(client_span),
        Some(&1),
        "the gateway's span is the only child of the client's"
    );
    let root = trace
        .iter()
        .find(|span| hex(&span.parent_span_id) == client_span)
        .expect("a root");
    assert_eq!(service_of(root).as_deref(), Some("gateway"));
    // gRPC calls (orders asks the cart, the cart asks the catalog) and bus messages
    // (the saga's commands and events) are in the tree.
    assert!(
        trace
            .iter()
            .any(|span| attribute(span, "path").is_some_and(|path| path.starts_with("/bazaar."))),
        "no gRPC call in the trace"
    );
    assert!(
        trace.iter().any(|span| span.name == "message"),
        "no bus message in the trace"
    );
}
