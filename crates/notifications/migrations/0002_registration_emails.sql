-- Registration emails: a link that confirms a new account's address, and word to an
-- address that has an account already. Like a welcome they are about no order. SQLite
-- cannot change a CHECK constraint in place, so the table is rebuilt, the same way on
-- PostgreSQL.
CREATE TABLE notifications_next (
    id                 TEXT   NOT NULL PRIMARY KEY,
    source_message_id  TEXT   NOT NULL UNIQUE,
    kind               TEXT   NOT NULL
        CHECK (kind IN ('welcome', 'confirm_address', 'already_registered',
                        'order_confirmed', 'order_cancelled', 'order_refunded')),
    customer_id        TEXT   NOT NULL,
    -- NULL for the account's emails, which are about no order.
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
    CHECK ((kind IN ('welcome', 'confirm_address', 'already_registered')) = (order_id IS NULL))
);

INSERT INTO notifications_next (id, source_message_id, kind, customer_id, order_id, subject,
    body, status, attempts, next_attempt_at_ms, claimed_until_ms, last_error, recipient,
    created_at_ms, sent_at_ms)
SELECT id, source_message_id, kind, customer_id, order_id, subject, body, status, attempts,
    next_attempt_at_ms, claimed_until_ms, last_error, recipient, created_at_ms, sent_at_ms
FROM notifications;

DROP TABLE notifications;
ALTER TABLE notifications_next RENAME TO notifications;

CREATE UNIQUE INDEX notifications_one_per_order ON notifications (kind, order_id);
CREATE UNIQUE INDEX notifications_one_welcome ON notifications (customer_id) WHERE kind = 'welcome';
CREATE INDEX notifications_due ON notifications (status, next_attempt_at_ms);
CREATE INDEX notifications_by_customer ON notifications (customer_id, created_at_ms, id);
