-- Notifications' schema, portable between SQLite and PostgreSQL.

-- Where to write to each customer, learnt from identity's user_registered events. An
-- order's email waits here until its customer's address is known.
CREATE TABLE customers (
    customer_id      TEXT   NOT NULL PRIMARY KEY,
    email            TEXT   NOT NULL,
    registered_at_ms BIGINT NOT NULL,
    created_at_ms    BIGINT NOT NULL
);

-- One row per email, rendered when its event arrived. An event makes at most one row
-- (source_message_id is unique), and so does each order's confirmation, cancellation
-- and refund, even when announced by two different events ((kind, order_id) is unique),
-- and each customer's welcome.
CREATE TABLE notifications (
    id                 TEXT   NOT NULL PRIMARY KEY,
    source_message_id  TEXT   NOT NULL UNIQUE,
    kind               TEXT   NOT NULL
        CHECK (kind IN ('welcome', 'order_confirmed', 'order_cancelled', 'order_refunded')),
    customer_id        TEXT   NOT NULL,
    -- NULL for a welcome, which is about no order.
    order_id           TEXT,
    subject            TEXT   NOT NULL,
    body               TEXT   NOT NULL,
    status             TEXT   NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    -- A sender working on the row until then; others leave it alone.
    claimed_until_ms   BIGINT,
    last_error         TEXT,
    -- The address it was sent (or refused) to.
    recipient          TEXT,
    created_at_ms      BIGINT NOT NULL,
    sent_at_ms         BIGINT,
    CHECK ((kind = 'welcome') = (order_id IS NULL))
);

CREATE UNIQUE INDEX notifications_one_per_order ON notifications (kind, order_id);
CREATE UNIQUE INDEX notifications_one_welcome ON notifications (customer_id) WHERE kind = 'welcome';
-- The sender's scan, and a customer's newest-first pages.
CREATE INDEX notifications_due ON notifications (status, next_attempt_at_ms);
CREATE INDEX notifications_by_customer ON notifications (customer_id, created_at_ms, id);
