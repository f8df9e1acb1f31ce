//! Admin changes reach the bus as versioned events, through the outbox.

use contracts::messaging::Envelope;
use contracts::messaging::catalog::{ProductCreatedV1, ProductDeletedV1, ProductPriceChangedV1};
use platform::bus::{Bus, SubscriptionSpec};
use reqwest::Method;
use serde_json::json;
use test_support::Engine;

use crate::helpers::TestApp;

test_support::on_both_engines!(product_changes_are_published_as_events);

/// The next event on `subscription`, which must come.
async fn next(subscription: &mut Box<dyn platform::bus::Subscription>) -> Envelope {
    test_support::next_message(subscription.as_mut(), std::time::Duration::from_secs(10)).await
}

async fn product_changes_are_published_as_events(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut events = app
        .bus
        .subscribe(&SubscriptionSpec::new("test.catalog-events", "catalog.>"))
        .await
        .expect("subscribed");
    // The demo catalog announced its products when it was seeded.
    for _ in 0..48 {
        let seeded = next(&mut events).await;
        assert!(seeded.correlation_id.starts_with("seed:"), "{seeded:?}");
        let _: ProductCreatedV1 = seeded.decode().expect("a ProductCreated");
    }
    let body = json!({
        "slug": "event-teapot",
        "name": "Event Teapot",
        "description": "A teapot that makes news.",
        "category": "kitchen",
        "price": {"amount_minor": 3000, "currency": "EUR"},
        "image": "/static/products/event-teapot.jpg",
        "attributes": {}
    });
    let created = app
        .client
        .post(app.url("/products"))
        .bearer_auth(app.issuer.admin())
        .header("x-request-id", "req-create-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status().as_u16(), 201);
    // The same slug again is refused, and its transaction publishes nothing.
    let refused = app
        .client
        .post(app.url("/products"))
        .bearer_auth(app.issuer.admin())
        .json(&body)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status().as_u16(), 409);

    let event = next(&mut events).await;
    assert_eq!(event.source, "catalog");
    assert_eq!(event.correlation_id, "req-create-1");
    assert_eq!(
        event.traceparent.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "the trace context travels with the event"
    );
    let created: ProductCreatedV1 = event.decode().expect("a ProductCreated");
    assert_eq!(created.slug, "event-teapot");
    assert_eq!(created.price.amount_minor, 3000);

    let rename = app
        .client
        .request(Method::PATCH, app.url("/products/event-teapot"))
        .bearer_auth(app.issuer.admin())
        .json(&json!({"name": "Renamed Teapot"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(rename.status().as_u16(), 200, "a rename is no price change");
    let reprice = app
        .client
        .request(Method::PATCH, app.url("/products/event-teapot"))
        .bearer_auth(app.issuer.admin())
        .json(&json!({"price": {"amount_minor": 3500, "currency": "EUR"}}))
        .send()
        .await
        .expect("answers");
    assert_eq!(reprice.status().as_u16(), 200);
    let changed: ProductPriceChangedV1 = next(&mut events).await.decode().expect("a price change");
    assert_eq!(changed.product_id, created.product_id);
    assert_eq!(
        (
            changed.old_price.amount_minor,
            changed.new_price.amount_minor
        ),
        (3000, 3500)
    );

    let deleted = app
        .client
        .delete(app.url("/products/event-teapot"))
        .bearer_auth(app.issuer.admin())
        .send()
        .await
        .expect("answers");
    assert_eq!(deleted.status().as_u16(), 204);
    let gone: ProductDeletedV1 = next(&mut events).await.decode().expect("a deletion");
    assert_eq!(gone.product_id, created.product_id);
    let quiet = events
        .next(std::time::Duration::from_millis(500))
        .await
        .expect("the bus answers");
    assert!(quiet.is_none(), "an event nobody caused was published");
}
