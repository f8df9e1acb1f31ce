//! The orders service's use cases: place an order, feed the saga an input, and run due
//! deadlines. Each runs in one transaction that appends the order's events, updates the
//! read model, enqueues the commands and public events, and moves the saga's deadline,
//! so none of them can happen without the others.

use anyhow::Context as _;
use contracts::messaging::Message;
use contracts::messaging::inventory::{
    CommitStockV1, Line, ReleaseStockV1, ReserveStockV1, ReturnStockV1,
};
use contracts::messaging::orders::{
    CancelReason, OrderCancelledV1, OrderConfirmedV1, OrderLine, OrderRefundedV1,
};
use contracts::messaging::payments::{
    AuthorizePaymentV1, CapturePaymentV1, RefundPaymentV1, ReviewPaymentV1, VoidPaymentV1,
};
use contracts::{CustomerId, Money, OrderId};
use platform::db::Database;
use platform::outbox::{self, Origin};
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;

use crate::domain::{Order, OrderEvent, Status};
use crate::saga::{self, Command, Deadlines, Decision, Input, Refusal};
use crate::{projection, store};

/// What the use cases need to know beyond their inputs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The saga's deadlines.
    pub deadlines: Deadlines,
    /// How long inventory holds an order's stock, in seconds.
    pub reservation_hold_secs: u64,
}

/// Enqueues `message` through the outbox inside the current transaction.
async fn send<M: Message>(
    connection: &mut AnyConnection,
    message: &M,
    origin: &Origin,
) -> anyhow::Result<()> {
    outbox::send(connection, crate::NAME, message, origin).await
}

/// Sends `command` for `order`.
async fn dispatch(
    connection: &mut AnyConnection,
    order: &Order,
    command: &Command,
    origin: &Origin,
    settings: &Settings,
) -> anyhow::Result<()> {
    let (order_id, customer_id) = ids(order)?;
    match command {
        Command::ReserveStock => {
            let lines = order
                .lines
                .iter()
                .map(|line| Line {
                    product_id: line.product_id,
                    quantity: line.quantity,
                })
                .collect();
            let hold_secs = settings.reservation_hold_secs;
            send(
                connection,
                &ReserveStockV1 {
                    order_id,
                    lines,
                    hold_secs,
                },
                origin,
            )
            .await
        }
        Command::ReleaseStock => send(connection, &ReleaseStockV1 { order_id }, origin).await,
        Command::CommitStock => send(connection, &CommitStockV1 { order_id }, origin).await,
        Command::ReturnStock => send(connection, &ReturnStockV1 { order_id }, origin).await,
        Command::AuthorizePayment => {
            let authorize = AuthorizePaymentV1 {
                order_id,
                customer_id,
                payment_method: order.payment_method.clone(),
                amount: order.total,
            };
            send(connection, &authorize, origin).await
        }
        Command::ReviewPayment { approve, reviewer } => {
            let review = ReviewPaymentV1 {
                order_id,
                approve: *approve,
                reviewer: reviewer.clone(),
            };
            send(connection, &review, origin).await
        }
        Command::CapturePayment => send(connection, &CapturePaymentV1 { order_id }, origin).await,
        Command::VoidPayment => send(connection, &VoidPaymentV1 { order_id }, origin).await,
        Command::RefundPayment => send(connection, &RefundPaymentV1 { order_id }, origin).await,
    }
}

/// The ids `order`'s messages carry. Orders made the order's id and took its
/// customer's from a verified access token, so neither fails to parse unless the stored
/// order was changed by hand.
fn ids(order: &Order) -> anyhow::Result<(OrderId, CustomerId)> {
    let order_id = OrderId::parse(&order.id)
        .with_context(|| format!("order id {:?} is not an order id", order.id))?;
    let customer_id = CustomerId::parse(&order.customer_id)
        .with_context(|| format!("order {order_id} names customer {:?}", order.customer_id))?;
    Ok((order_id, customer_id))
}

/// Announces an order's end to the rest of the shop, and counts it.
async fn announce(
    connection: &mut AnyConnection,
    order: &Order,
    origin: &Origin,
) -> anyhow::Result<()> {
    let (order_id, customer_id) = ids(order)?;
    match order.status {
        Status::Confirmed => {
            metrics::counter!("orders_confirmed_total").increment(1);
            metrics::counter!("orders_revenue_minor_total", "currency" => order.total.currency.as_str().to_owned())
                .increment(u64::try_from(order.total.amount_minor).unwrap_or(0));
            let confirmed = OrderConfirmedV1 {
                order_id,
                customer_id,
                lines: order.lines.clone(),
                total: order.total,
                cart_revision: order.cart_revision,
            };
            send(connection, &confirmed, origin).await
        }
        Status::Cancelled | Status::Rejected => {
            let reason = if order.status == Status::Rejected {
                CancelReason::OutOfStock
            } else {
                order.cancel_reason.unwrap_or(CancelReason::Other)
            };
            metrics::counter!("orders_cancelled_total", "reason" => reason.as_str()).increment(1);
            let cancelled = OrderCancelledV1 {
                order_id,
                customer_id,
                reason,
            };
            send(connection, &cancelled, origin).await
        }
        Status::RefundFailed => {
            // Money the shop must give back by hand: the operator alert counts these.
            metrics::counter!("orders_refund_failed_total").increment(1);
            tracing::error!(
                order = %order_id,
                total = %order.total,
                "the card network refused the refund: give the money back another way"
            );
            Ok(())
        }
        Status::Refunded => {
            metrics::counter!("orders_refunded_total").increment(1);
            let refunded = OrderRefundedV1 {
                order_id,
                customer_id,
                amount: order.total,
            };
            send(connection, &refunded, origin).await
        }
        _ => Ok(()),
    }
}

/// Records `decision` for the order (`before` is `None` for a new order), with
/// everything that follows from it, and returns the order after it.
async fn record(
    connection: &mut AnyConnection,
    order_id: &str,
    before: Option<&Order>,
    decision: &Decision,
    origin: &Origin,
    settings: &Settings,
    now: i64,
) -> anyhow::Result<Order> {
    let expected = before.map_or(0, |order| order.version);
    store::append(&mut *connection, order_id, expected, &decision.events, now).await?;
    let after = match before {
        Some(order) => {
            let mut order = order.clone();
            for event in &decision.events {
                order.apply(event, now);
            }
            order
        }
        None => Order::fold(order_id, decision.events.iter().map(|event| (event, now)))?,
    };
    projection::project(&mut *connection, before, &after, &decision.events, now).await?;
    for command in &decision.commands {
        dispatch(&mut *connection, &after, command, origin, settings).await?;
    }
    if before.map(|order| order.status) != Some(after.status) {
        announce(&mut *connection, &after, origin).await?;
    }
    store::set_deadline(&mut *connection, order_id, settings.deadlines.due(&after)).await?;
    Ok(after)
}

/// Feeds `input` to the saga of order `order_id` inside the caller's transaction.
/// Unknown orders are ignored (the message is not about one of ours).
pub async fn handle(
    connection: &mut AnyConnection,
    order_id: &str,
    input: Input,
    origin: &Origin,
    settings: &Settings,
    now: i64,
) -> anyhow::Result<()> {
    let Some(order) = store::load(&mut *connection, order_id).await? else {
        tracing::warn!(order = order_id, "an answer about an unknown order");
        return Ok(());
    };
    match saga::react(&order, input, &settings.deadlines) {
        Ok(decision) if decision.is_empty() => Ok(()),
        Ok(decision) => record(
            connection,
            order_id,
            Some(&order),
            &decision,
            origin,
            settings,
            now,
        )
        .await
        .map(drop),
        Err(refusal) => {
            tracing::warn!(order = order_id, "{refusal}");
            Ok(())
        }
    }
}

/// Why a customer's or admin's request about an order was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No such order, or not the caller's.
    #[error("no such order")]
    NotFound,
    /// The order's state does not allow it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The order kept changing under the request (answers arriving); try again.
    #[error("the order is busy; try again")]
    Busy,
    /// Something failed on our side.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Carries out a request (cancel, review, refund) on an order, which must be
/// `customer`'s when one is given.
pub async fn request(
    db: &Database,
    order_id: &str,
    customer: Option<&str>,
    input: Input,
    origin: &Origin,
    settings: &Settings,
    now: i64,
) -> Result<Order, RequestError> {
    // An answer from a participant may extend the order between our read and our
    // write; then the request is decided again on the order as it now is.
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let mut tx = db.begin().await.context("starting a transaction")?;
        let order = store::load(&mut tx, order_id)
            .await?
            .filter(|order| customer.is_none_or(|customer| order.customer_id == customer))
            .ok_or(RequestError::NotFound)?;
        let decision = saga::react(&order, input.clone(), &settings.deadlines)?;
        let recorded = record(
            &mut tx,
            order_id,
            Some(&order),
            &decision,
            origin,
            settings,
            now,
        )
        .await;
        match recorded {
            Ok(after) => {
                tx.commit().await.context("committing a request")?;
                return Ok(after);
            }
            Err(error) if error.is::<store::Conflict>() => {
                if attempt == ATTEMPTS {
                    return Err(RequestError::Busy);
                }
                tracing::debug!(order = order_id, attempt, "{error}; deciding again");
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Runs the due step of one order in its own transaction; `false` if it was not due
/// after all (an answer moved the order on).
async fn run_one_due(
    db: &Database,
    order_id: &str,
    settings: &Settings,
    now: i64,
) -> anyhow::Result<bool> {
    let mut tx = db.begin().await?;
    let Some(order) = store::load(&mut tx, order_id).await? else {
        store::set_deadline(&mut tx, order_id, None).await?;
        tx.commit().await?;
        return Ok(false);
    };
    // Checked again inside the transaction: an answer may have moved the order on.
    let ran = match settings.deadlines.due(&order) {
        Some(due) if due <= now => {
            let origin = Origin {
                correlation_id: order_id.to_owned(),
                ..Origin::default()
            };
            let decision =
                saga::react(&order, Input::DeadlinePassed, &settings.deadlines).unwrap_or_default();
            record(
                &mut tx,
                order_id,
                Some(&order),
                &decision,
                &origin,
                settings,
                now,
            )
            .await?;
            true
        }
        later => {
            store::set_deadline(&mut tx, order_id, later).await?;
            false
        }
    };
    tx.commit().await?;
    Ok(ran)
}

/// Runs every saga step whose deadline passed by `now`, each in its own transaction;
/// returns how many. The deadline worker's step.
pub async fn run_due(db: &Database, settings: &Settings, now: i64) -> anyhow::Result<usize> {
    let mut connection = db.pool().acquire().await?;
    let due = store::due(&mut connection, now, 100).await?;
    drop(connection);
    let mut ran = 0;
    for order_id in due {
        // One order's failure (a conflict with an answer, a bad event) must not hold
        // up the others' deadlines: it is logged and tried again next round.
        match run_one_due(db, &order_id, settings, now).await {
            Ok(true) => ran += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(
                    order = order_id,
                    "running a due saga step failed: {error:#}"
                );
            }
        }
    }
    Ok(ran)
}

/// What a customer asks to order with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The payment method's token, from `POST /api/payments/methods`.
    #[schema(pattern = r"^pm_[0-9a-f]{32}$")]
    pub payment_method: String,
}

impl PlaceOrder {
    /// A digest of the request, to tell a retry from a different request under the
    /// same Idempotency-Key.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.payment_method.as_bytes());
        hash.finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The priced cart an order is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basket {
    /// The lines, priced by the catalog.
    pub lines: Vec<OrderLine>,
    /// Their sum.
    pub total: Money,
    /// The revision of the cart they were read from.
    pub cart_revision: Option<i64>,
}

/// What became of a placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A new order.
    Placed(String),
    /// The Idempotency-Key was used before with the same request: that order.
    Repeated(String),
    /// The Idempotency-Key was used before with a different request.
    KeyReused,
}

/// The order placed earlier with `key`, if any, or whether the key was used for a
/// different request.
pub async fn previous(
    db: &Database,
    customer_id: &str,
    key: &str,
    request: &PlaceOrder,
) -> anyhow::Result<Option<Placement>> {
    let mut connection = db.pool().acquire().await?;
    let found = store::idempotency_key(&mut connection, customer_id, key).await?;
    Ok(found.map(|(digest, order_id)| {
        if digest == request.digest() {
            Placement::Repeated(order_id)
        } else {
            Placement::KeyReused
        }
    }))
}

/// An order about to be placed.
#[derive(Clone, Debug)]
pub struct NewOrder<'a> {
    /// Who orders.
    pub customer_id: &'a str,
    /// The request's Idempotency-Key.
    pub key: &'a str,
    /// The request.
    pub request: &'a PlaceOrder,
    /// The priced cart.
    pub basket: Basket,
}

/// Places an order for its basket, claiming its key in the same transaction; a
/// concurrent request with the same key gets the order the first one placed.
pub async fn place(
    db: &Database,
    new: NewOrder<'_>,
    origin: &Origin,
    settings: &Settings,
    now: i64,
) -> anyhow::Result<Placement> {
    let NewOrder {
        customer_id,
        key,
        request,
        basket,
    } = new;
    let order_id = uuid::Uuid::now_v7().to_string();
    let mut tx = db.begin().await.context("starting a transaction")?;
    let claimed =
        store::claim_idempotency_key(&mut tx, customer_id, key, &request.digest(), &order_id, now)
            .await?;
    if !claimed {
        tx.rollback().await?;
        return Ok(previous(db, customer_id, key, request)
            .await?
            .unwrap_or(Placement::KeyReused));
    }
    let decision = Decision {
        events: vec![OrderEvent::Placed {
            customer_id: customer_id.to_owned(),
            lines: basket.lines,
            total: basket.total,
            payment_method: request.payment_method.clone(),
            cart_revision: basket.cart_revision,
            trace_id: origin.trace_id(),
        }],
        commands: vec![Command::ReserveStock],
    };
    record(&mut tx, &order_id, None, &decision, origin, settings, now).await?;
    tx.commit().await.context("committing a new order")?;
    metrics::counter!("orders_placed_total").increment(1);
    Ok(Placement::Placed(order_id))
}
