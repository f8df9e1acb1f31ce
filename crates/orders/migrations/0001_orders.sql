-- The write side: every order's events, the source of truth, in order.
CREATE TABLE order_events (
    order_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- One order per customer and Idempotency-Key, with a hash of the request it came with.
CREATE TABLE idempotency_keys (
    customer_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (customer_id, idempotency_key)
);

-- When each unfinished saga's current step is due.
CREATE TABLE saga_deadlines (
    order_id TEXT PRIMARY KEY NOT NULL,
    due_at_ms BIGINT NOT NULL
);
CREATE INDEX saga_deadlines_due ON saga_deadlines (due_at_ms);

-- The read side, projected from the events: what "my orders" and an order's page read.
CREATE TABLE order_views (
    order_id TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    total_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    lines TEXT NOT NULL,
    reason TEXT,
    placed_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX order_views_customer ON order_views (customer_id, order_id);
CREATE INDEX order_views_status ON order_views (status, order_id);

CREATE TABLE order_timeline (
    order_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, seq)
);
