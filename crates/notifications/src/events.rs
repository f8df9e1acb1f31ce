//! What notifications consumes, each through the inbox: identity's registration
//! requests (to send the link that confirms an address, or word that it has an account
//! already), its registrations (to learn addresses and greet new customers), and the
//! orders service's public events (to tell customers what became of their orders).
//!
//! Each event records at most one notification, rendered there and then, in the same
//! transaction as the inbox record. The tables' unique keys back that up beyond the
//! inbox: one notification per event id, and one per order and kind, so two different
//! events announcing the same confirmation still make one email.

use std::sync::Arc;

use contracts::messaging::identity::{
    RegistrationOutcome, RegistrationRequestedV1, UserRegisteredV1,
};
use contracts::messaging::orders::{OrderCancelledV1, OrderConfirmedV1, OrderRefundedV1};
use contracts::messaging::{Envelope, Message as _};
use contracts::{OrderId, UserId};
use futures_util::future::BoxFuture;
use platform::bus::{Bus, SubscriptionSpec};
use platform::clock::now_ms;
use platform::db::Database;
use platform::inbox::{Consumer, Handler};
use sqlx::AnyConnection;

use crate::domain::NotificationId;
use crate::store::{self, NewNotification};
use crate::templates::{self, Email};

/// The subscription to identity's registrations.
pub fn identity_events() -> SubscriptionSpec {
    SubscriptionSpec::new("notifications.identity-events", UserRegisteredV1::TYPE)
}

/// The subscription to the orders service's public events.
pub fn order_events() -> SubscriptionSpec {
    SubscriptionSpec::new("notifications.order-events", "orders.*.v1")
}

/// The subscription to identity's registration requests.
pub fn registration_requests() -> SubscriptionSpec {
    SubscriptionSpec::new(
        "notifications.registration-requests",
        RegistrationRequestedV1::TYPE,
    )
}

/// The consumers of the three subscriptions (identity's events, the orders', the
/// registration requests, in that order), applying messages with `events`.
pub async fn consumers(
    db: &Database,
    bus: Arc<dyn Bus>,
    events: Events,
) -> anyhow::Result<Vec<Consumer>> {
    let events = Arc::new(events);
    let mut consumers = Vec::new();
    for spec in [identity_events(), order_events(), registration_requests()] {
        consumers.push(Consumer::new(db.clone(), bus.clone(), &spec, events.clone()).await?);
    }
    Ok(consumers)
}

/// Where the shop is when no `shop_url` is configured and no gateway runs alongside.
pub const DEFAULT_SHOP_URL: &str = "http://127.0.0.1:8080";

/// Turns events into notifications.
#[derive(Clone, Debug)]
pub struct Events {
    /// The shop's address as customers reach it, for links; no trailing `/`.
    shop_url: Arc<str>,
}

impl Events {
    /// Events whose emails link to `shop_url`.
    pub fn new(shop_url: &str) -> Self {
        Self {
            shop_url: shop_url.trim_end_matches('/').into(),
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new(DEFAULT_SHOP_URL)
    }
}

impl Handler for Events {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let now = now_ms();
            match envelope.kind.as_str() {
                kind if kind == UserRegisteredV1::TYPE => {
                    let registered: UserRegisteredV1 = envelope.decode()?;
                    store::remember_customer(
                        connection,
                        &registered.user_id.to_string(),
                        &registered.email,
                        registered.registered_at_ms,
                        now,
                    )
                    .await?;
                    let email = templates::welcome(&registered.email);
                    record(connection, envelope, registered.user_id, None, &email, now).await
                }
                kind if kind == RegistrationRequestedV1::TYPE => {
                    let requested: RegistrationRequestedV1 = envelope.decode()?;
                    // The address is known now, so the email can leave at once; an
                    // account never confirmed keeps it without ever being written to
                    // again.
                    store::remember_customer(
                        connection,
                        &requested.user_id.to_string(),
                        &requested.email,
                        now,
                        now,
                    )
                    .await?;
                    let email = match &requested.outcome {
                        RegistrationOutcome::Confirm {
                            token,
                            expires_at_ms,
                        } => {
                            let link = format!("{}/confirm?token={token}", self.shop_url);
                            templates::confirm_address(&requested.email, &link, *expires_at_ms)
                        }
                        RegistrationOutcome::AlreadyRegistered => {
                            templates::already_registered(&requested.email, &self.shop_url)
                        }
                    };
                    record(connection, envelope, requested.user_id, None, &email, now).await
                }
                kind if kind == OrderConfirmedV1::TYPE => {
                    let confirmed: OrderConfirmedV1 = envelope.decode()?;
                    let email = templates::order_confirmed(&confirmed);
                    let order = Some(confirmed.order_id);
                    record(
                        connection,
                        envelope,
                        confirmed.customer_id,
                        order,
                        &email,
                        now,
                    )
                    .await
                }
                kind if kind == OrderCancelledV1::TYPE => {
                    let cancelled: OrderCancelledV1 = envelope.decode()?;
                    let email = templates::order_cancelled(&cancelled);
                    let order = Some(cancelled.order_id);
                    record(
                        connection,
                        envelope,
                        cancelled.customer_id,
                        order,
                        &email,
                        now,
                    )
                    .await
                }
                kind if kind == OrderRefundedV1::TYPE => {
                    let refunded: OrderRefundedV1 = envelope.decode()?;
                    let email = templates::order_refunded(&refunded);
                    let order = Some(refunded.order_id);
                    record(
                        connection,
                        envelope,
                        refunded.customer_id,
                        order,
                        &email,
                        now,
                    )
                    .await
                }
                // The orders service's other events (placed, and those to come) are
                // nothing to write home about.
                _ => Ok(()),
            }
        })
    }
}

async fn record(
    connection: &mut AnyConnection,
    envelope: &Envelope,
    customer_id: UserId,
    order_id: Option<OrderId>,
    email: &Email,
    now: i64,
) -> anyhow::Result<()> {
    let id = NotificationId::generate();
    let (customer_id, order_id) = (customer_id.to_string(), order_id.map(|id| id.to_string()));
    let (customer_id, order_id) = (customer_id.as_str(), order_id.as_deref());
    let new = store::insert(
        connection,
        &NewNotification {
            id: &id,
            source_message_id: &envelope.id,
            kind: email.kind,
            customer_id,
            order_id,
            subject: &email.subject,
            body: &email.body,
            now_ms: now,
        },
    )
    .await?;
    if new {
        tracing::info!(notification = %id, kind = %email.kind, customer = customer_id, "queued an email");
    } else {
        tracing::info!(
            kind = %email.kind,
            order = order_id,
            message = envelope.id,
            "this email is queued already; not queueing it twice"
        );
    }
    Ok(())
}
