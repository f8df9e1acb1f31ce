//! Carts in Redis: one hash per customer (product id → units), which Redis drops by
//! itself once the cart goes untouched for `abandon_after`.
//!
//! Every change is one Lua script, which Redis runs atomically: the checks a change
//! makes (is the line there, how many lines are there) and the change itself cannot be
//! interleaved with another change. Each script also resets the cart's TTL.
//!
//! Keys: `<prefix>{<customer>}` is the cart, `<prefix>{<customer>}:since` the revision
//! that created each line with the cart's revision under `#rev`, and
//! `<prefix>{<customer>}:orders` a sorted set of the orders already taken out of it
//! (scored by when). The braces put a customer's keys in one Redis Cluster hash slot,
//! which a script touching several needs; customer ids never contain braces, so no two
//! customers' keys can collide.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use platform::clock::now_ms;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{CartError, CartStore, Contents, check_quantity};
use crate::domain::{CustomerId, Limits, Line, ProductId};

/// Adds units to a line, creating it (at a new revision) if the cart has room; answers
/// the line's new quantity, or -1 when the cart is full.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1]: the cart, KEYS[2]: its revisions. ARGV: product, units to add, most units,
-- most lines, TTL (s), now (ms).
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
    return -1
  end
  local previous = tonumber(redis.call('HGET', KEYS[2], '#rev') or '0')
  local revision = string.format('%d', math.max(previous + 1, tonumber(ARGV[6])))
  redis.call('HSET', KEYS[2], '#rev', revision, ARGV[1], revision)
  held = 0
end
local quantity = math.min(tonumber(held) + tonumber(ARGV[2]), tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], ARGV[1], quantity)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return quantity
",
    )
});

/// Sets an existing line's quantity; answers 0 when there is no such line.
static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1]: the cart, KEYS[2]: its revisions. ARGV: product, units, TTL (s).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
",
    )
});

/// Removes a line; answers how many were removed (0 or 1).
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1]: the cart, KEYS[2]: its revisions. ARGV: product, TTL (s).
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return removed
",
    )
});

/// Empties the cart but keeps its revision, so a line added next is newer than any
/// order placed before.
static CLEAR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1]: the cart, KEYS[2]: its revisions. ARGV: TTL (s).
local revision = redis.call('HGET', KEYS[2], '#rev')
redis.call('DEL', KEYS[1], KEYS[2])
if revision then
  redis.call('HSET', KEYS[2], '#rev', revision)
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return 1
",
    )
});

/// Takes an order's lines out of the cart unless that order was taken out before;
/// answers 1 if it did, 0 for an order seen before.
static REMOVE_ORDERED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1]: the cart, KEYS[2]: its processed orders, KEYS[3]: its revisions. ARGV:
-- order id, now (ms), forget orders processed before (ms), keep them for (ms), cart
-- TTL (s), the cart's revision when the order was placed ('' if unknown), then pairs
-- of product and units ordered.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local placed_at = tonumber(ARGV[6])
for i = 7, #ARGV, 2 do
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  local since = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
  -- A line created after the order was placed is not what the order bought.
  if held and not (placed_at and since > placed_at) then
    local left = held - tonumber(ARGV[i + 1])
    if left > 0 then
      redis.call('HSET', KEYS[1], ARGV[i], left)
    else
      redis.call('HDEL', KEYS[1], ARGV[i])
      redis.call('HDEL', KEYS[3], ARGV[i])
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
",
    )
});

/// Carts in Redis.
#[derive(Clone)]
pub struct RedisCartStore {
    connection: ConnectionManager,
    prefix: String,
    limits: Limits,
    ttl_secs: u64,
}

impl std::fmt::Debug for RedisCartStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCartStore")
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl RedisCartStore {
    /// Connects to the Redis server at `url`, keeping carts under keys that start with
    /// `key_prefix`, to `limits`, each expiring `abandon_after` after its last change.
    /// Each command fails after `timeout`; a lost connection is re-established.
    pub async fn connect(
        url: &str,
        key_prefix: impl Into<String>,
        limits: Limits,
        abandon_after: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("parsing the Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .context("connecting to Redis")?;
        Ok(Self {
            connection,
            prefix: key_prefix.into(),
            limits,
            ttl_secs: abandon_after.as_secs().max(1),
        })
    }

    /// The key of the customer's cart.
    pub fn cart_key(&self, customer: &CustomerId) -> String {
        format!("{}{{{customer}}}", self.prefix)
    }

    /// The key of the revisions of the customer's cart and its lines.
    pub fn revisions_key(&self, customer: &CustomerId) -> String {
        format!("{}{{{customer}}}:since", self.prefix)
    }

    /// The key of the set of orders already taken out of the customer's cart.
    pub fn orders_key(&self, customer: &CustomerId) -> String {
        format!("{}{{{customer}}}:orders", self.prefix)
    }

    /// How long until the customer's cart is dropped as abandoned, unless it changes;
    /// `None` if there is no cart.
    pub async fn time_to_live(&self, customer: &CustomerId) -> anyhow::Result<Option<Duration>> {
        let millis: i64 = redis::cmd("PTTL")
            .arg(self.cart_key(customer))
            .query_async(&mut self.connection.clone())
            .await
            .context("reading a cart's TTL")?;
        // -2: no such key; -1: a key without expiry, which this store never writes.
        Ok(u64::try_from(millis).ok().map(Duration::from_millis))
    }

    async fn contents_of(&self, customer: &CustomerId) -> anyhow::Result<Contents> {
        // MULTI/EXEC, so the lines and the revision are of one moment.
        let (stored, revision): (HashMap<String, i64>, Option<i64>) = redis::pipe()
            .atomic()
            .hgetall(self.cart_key(customer))
            .hget(self.revisions_key(customer), "#rev")
            .query_async(&mut self.connection.clone())
            .await
            .context("reading a cart")?;
        let mut lines = stored
            .into_iter()
            .map(|(product, quantity)| {
                let product_id = ProductId::parse(&product)
                    .with_context(|| format!("stored product id {product:?}"))?;
                Ok(Line::new(product_id, quantity))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        lines.sort_by_key(|a| a.product_id);
        Ok(Contents {
            revision: revision.unwrap_or(0),
            lines,
        })
    }

    async fn add_line(
        &self,
        customer: &CustomerId,
        product: &ProductId,
        quantity: i64,
    ) -> Result<i64, CartError> {
        check_quantity(self.limits, quantity)?;
        let answer: i64 = ADD
            .key(self.cart_key(customer))
            .key(self.revisions_key(customer))
            .arg(product.to_string())
            .arg(quantity)
            .arg(self.limits.max_quantity)
            .arg(self.limits.max_lines)
            .arg(self.ttl_secs)
            .arg(now_ms())
            .invoke_async(&mut self.connection.clone())
            .await
            .context("adding to a cart")?;
        if answer < 0 {
            return Err(CartError::TooManyLines {
                max: self.limits.max_lines,
            });
        }
        Ok(answer)
    }

    async fn set_line_quantity(
        &self,
        customer: &CustomerId,
        product: &ProductId,
        quantity: i64,
    ) -> Result<(), CartError> {
        check_quantity(self.limits, quantity)?;
        let set: i64 = SET
            .key(self.cart_key(customer))
            .key(self.revisions_key(customer))
            .arg(product.to_string())
            .arg(quantity)
            .arg(self.ttl_secs)
            .invoke_async(&mut self.connection.clone())
            .await
            .context("changing a line")?;
        if set == 0 {
            return Err(CartError::NoSuchLine);
        }
        Ok(())
    }

    async fn remove_line(
        &self,
        customer: &CustomerId,
        product: &ProductId,
    ) -> anyhow::Result<bool> {
        let removed: i64 = REMOVE
            .key(self.cart_key(customer))
            .key(self.revisions_key(customer))
            .arg(product.to_string())
            .arg(self.ttl_secs)
            .invoke_async(&mut self.connection.clone())
            .await
            .context("removing a line")?;
        Ok(removed == 1)
    }

    async fn clear_cart(&self, customer: &CustomerId) -> anyhow::Result<()> {
        let _: i64 = CLEAR
            .key(self.cart_key(customer))
            .key(self.revisions_key(customer))
            .arg(self.ttl_secs)
            .invoke_async(&mut self.connection.clone())
            .await
            .context("emptying a cart")?;
        Ok(())
    }

    async fn remove_order(
        &self,
        customer: &CustomerId,
        order_id: &str,
        ordered: &[Line],
        revision: Option<i64>,
    ) -> anyhow::Result<bool> {
        let now = now_ms();
        let retention = i64::try_from(platform::inbox::RETENTION.as_millis()).unwrap_or(i64::MAX);
        let mut invocation = REMOVE_ORDERED.prepare_invoke();
        invocation
            .key(self.cart_key(customer))
            .key(self.orders_key(customer))
            .key(self.revisions_key(customer))
            .arg(order_id)
            .arg(now)
            .arg(now.saturating_sub(retention))
            .arg(retention)
            .arg(self.ttl_secs)
            .arg(
                revision
                    .map(|revision| revision.to_string())
                    .unwrap_or_default(),
            );
        for line in ordered {
            // A negative quantity would add units; an order takes, never gives.
            invocation
                .arg(line.product_id.to_string())
                .arg(line.quantity.max(0));
        }
        let applied: i64 = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .context("taking an order out of a cart")?;
        Ok(applied == 1)
    }

    async fn ping_server(&self) -> Result<(), String> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.connection.clone())
            .await
            .map(drop)
            .map_err(|error| format!("Redis did not answer: {error}"))
    }
}

impl CartStore for RedisCartStore {
    fn contents<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<Contents>> {
        Box::pin(self.contents_of(customer))
    }

    fn add<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<i64, CartError>> {
        Box::pin(self.add_line(customer, product, quantity))
    }

    fn set_quantity<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
        quantity: i64,
    ) -> BoxFuture<'a, Result<(), CartError>> {
        Box::pin(self.set_line_quantity(customer, product, quantity))
    }

    fn remove<'a>(
        &'a self,
        customer: &'a CustomerId,
        product: &'a ProductId,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(self.remove_line(customer, product))
    }

    fn clear<'a>(&'a self, customer: &'a CustomerId) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.clear_cart(customer))
    }

    fn remove_ordered<'a>(
        &'a self,
        customer: &'a CustomerId,
        order_id: &'a str,
        ordered: &'a [Line],
        revision: Option<i64>,
    ) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(self.remove_order(customer, order_id, ordered, revision))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.ping_server())
    }
}
