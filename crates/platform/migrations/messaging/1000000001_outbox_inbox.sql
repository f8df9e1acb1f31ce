-- The outbox and inbox every service that publishes or consumes messages has in its own
-- database. Portable between SQLite and PostgreSQL. The version lies far above any
-- service's own migrations, which share the same history table.

-- Messages written in the same transaction as the state change that caused them,
-- published by the relay and only then marked published.
CREATE TABLE outbox (
    id              TEXT   NOT NULL PRIMARY KEY,
    envelope        TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    published_at    BIGINT,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- A relay working on the row until then; others skip it.
    claimed_until   BIGINT
);

CREATE INDEX outbox_pending ON outbox (published_at, next_attempt_at, created_at);

-- Messages already handled, per subscription, recorded in the same transaction as the
-- handler's effects: a redelivered message is recognised and has no second effect.
CREATE TABLE inbox (
    subscription TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    handled_at   BIGINT NOT NULL,
    PRIMARY KEY (subscription, message_id)
);
