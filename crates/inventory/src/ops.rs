//! Inventory's use cases. The command handlers run inside the inbox's transaction, so a
//! command's effect, the event that answers it and the record that it was handled
//! commit together; a repeated command finds its reservation and gets the same answer.

use contracts::OrderId;
use contracts::messaging::Message;
use contracts::messaging::inventory::{
    CommitRefusedV1, CommitStockV1, ReleaseReason, ReleaseStockV1, ReservationEnd, ReserveStockV1,
    ReturnStockV1, StockCommittedV1, StockRejectedV1, StockReleasedV1, StockReservedV1,
    StockReturnedV1,
};
use platform::outbox::{self, Origin};
use sqlx::AnyConnection;

use crate::domain::{Lines, State};
use crate::store;

/// Sends `message` through the outbox, inside the current transaction.
async fn answer<M: Message>(
    connection: &mut AnyConnection,
    message: &M,
    origin: &Origin,
) -> anyhow::Result<()> {
    outbox::send(connection, crate::NAME, message, origin).await
}

/// Holds the stock of an order, all lines or none, and answers `StockReserved` or
/// `StockRejected`. A repeated command (the saga re-sends when an answer is slow) gets
/// the answer the first one got.
pub async fn reserve(
    connection: &mut AnyConnection,
    command: &ReserveStockV1,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<()> {
    let order_id = command.order_id;
    if let Some((state, expires_at_ms)) = store::reservation(&mut *connection, order_id).await? {
        return match state {
            State::Rejected => {
                let unavailable = Vec::new();
                answer(
                    connection,
                    &StockRejectedV1 {
                        order_id,
                        unavailable,
                    },
                    origin,
                )
                .await
            }
            State::Held | State::Committed => {
                answer(
                    connection,
                    &StockReservedV1 {
                        order_id,
                        expires_at_ms,
                    },
                    origin,
                )
                .await
            }
            State::Released | State::Expired => {
                let reason = if state == State::Expired {
                    ReleaseReason::Expired
                } else {
                    ReleaseReason::Released
                };
                answer(connection, &StockReleasedV1 { order_id, reason }, origin).await
            }
        };
    }
    let raw = command
        .lines
        .iter()
        .map(|line| (line.product_id, line.quantity));
    let short = match Lines::parse(raw) {
        Ok(lines) => {
            let short = store::shortages(&mut *connection, &lines).await?;
            if short.is_empty() {
                let hold_ms =
                    i64::try_from(command.hold_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
                let expires_at_ms = now.saturating_add(hold_ms);
                store::hold(&mut *connection, order_id, &lines, expires_at_ms, now).await?;
                return answer(
                    connection,
                    &StockReservedV1 {
                        order_id,
                        expires_at_ms,
                    },
                    origin,
                )
                .await;
            }
            short
        }
        Err(reason) => {
            tracing::warn!(
                order = %order_id,
                "refusing a malformed reservation: {reason}"
            );
            Vec::new()
        }
    };
    store::reject(&mut *connection, order_id, now).await?;
    answer(
        connection,
        &StockRejectedV1 {
            order_id,
            unavailable: short,
        },
        origin,
    )
    .await
}

/// Gives an order's held stock back and answers `StockReleased`, also when it was
/// released or expired before.
pub async fn release(
    connection: &mut AnyConnection,
    command: &ReleaseStockV1,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<()> {
    let order_id = command.order_id;
    match store::finish(&mut *connection, order_id, State::Released, now).await? {
        Some(State::Held | State::Released) => {
            let reason = ReleaseReason::Released;
            answer(connection, &StockReleasedV1 { order_id, reason }, origin).await
        }
        Some(State::Expired) => {
            let reason = ReleaseReason::Expired;
            answer(connection, &StockReleasedV1 { order_id, reason }, origin).await
        }
        Some(State::Committed) => {
            // Sold stock is not given back by a release; a refund does not restock.
            tracing::warn!(
                order = %order_id,
                "release of a committed reservation ignored"
            );
            Ok(())
        }
        // Rejected: nothing was ever held, so there is nothing to give back.
        Some(State::Rejected) => {
            let reason = ReleaseReason::Released;
            answer(connection, &StockReleasedV1 { order_id, reason }, origin).await
        }
        // Unknown: the release overtook its reservation. Remember it, so that the
        // reservation, should it still come, holds nothing for a cancelled order.
        None => {
            store::record(&mut *connection, order_id, State::Released, now, now).await?;
            let reason = ReleaseReason::Released;
            answer(connection, &StockReleasedV1 { order_id, reason }, origin).await
        }
    }
}

/// Sells an order's held stock and answers `StockCommitted`; too late (released,
/// expired, rejected, unknown) it answers `CommitRefused`, and the saga must refund.
pub async fn commit(
    connection: &mut AnyConnection,
    command: &CommitStockV1,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<()> {
    let order_id = command.order_id;
    match store::finish(&mut *connection, order_id, State::Committed, now).await? {
        Some(State::Held | State::Committed) => {
            answer(connection, &StockCommittedV1 { order_id }, origin).await
        }
        ended => {
            let state = match ended {
                Some(State::Released) => ReservationEnd::Released,
                Some(State::Expired) => ReservationEnd::Expired,
                Some(State::Rejected) => ReservationEnd::Rejected,
                _ => ReservationEnd::Unknown,
            };
            answer(connection, &CommitRefusedV1 { order_id, state }, origin).await
        }
    }
}

/// Puts an order's sold stock back on sale, because its payment could not be taken,
/// and answers `StockReturned`; also when it was returned before, or nothing was sold
/// (then there is nothing to give back, which is what the saga wants to hear).
pub async fn return_stock(
    connection: &mut AnyConnection,
    command: &ReturnStockV1,
    origin: &Origin,
    now: i64,
) -> anyhow::Result<()> {
    let order_id = command.order_id;
    if store::return_sold(&mut *connection, order_id, now).await? {
        tracing::info!(order = %order_id, "sold stock returned to sale");
    }
    answer(connection, &StockReturnedV1 { order_id }, origin).await
}

/// Ends one held reservation whose hold ran out, answering `StockReleased` (reason
/// `expired`). Nothing happens if it was committed or released meanwhile.
pub async fn expire(
    connection: &mut AnyConnection,
    order_id: OrderId,
    now: i64,
) -> anyhow::Result<bool> {
    let expired =
        store::finish(&mut *connection, order_id, State::Expired, now).await? == Some(State::Held);
    if expired {
        let origin = Origin {
            correlation_id: order_id.to_string(),
            ..Origin::default()
        };
        let released = StockReleasedV1 {
            order_id,
            reason: ReleaseReason::Expired,
        };
        answer(connection, &released, &origin).await?;
    }
    Ok(expired)
}
