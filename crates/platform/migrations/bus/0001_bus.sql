-- The embedded bus: one SQLite file, written only by the bus.

-- Every message published, once per id.
CREATE TABLE messages (
    seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    subject      TEXT    NOT NULL,
    envelope     TEXT    NOT NULL,
    published_at BIGINT  NOT NULL
);

-- Durable subscriptions and their filters.
CREATE TABLE subscriptions (
    name   TEXT NOT NULL PRIMARY KEY,
    filter TEXT NOT NULL
);

-- What each subscription still has to handle: one row per (subscription, message),
-- deleted when acknowledged. `available_at` is when it may be delivered next (a lease
-- pushes it to the end of the ack wait); `lease` names the current delivery, so a late
-- ack or nack of an earlier delivery changes nothing.
CREATE TABLE deliveries (
    subscription TEXT   NOT NULL REFERENCES subscriptions (name),
    seq          BIGINT NOT NULL REFERENCES messages (seq),
    attempts     BIGINT NOT NULL,
    available_at BIGINT NOT NULL,
    state        TEXT   NOT NULL CHECK (state IN ('pending', 'dead')),
    lease        TEXT,
    PRIMARY KEY (subscription, seq)
);

CREATE INDEX deliveries_ready ON deliveries (subscription, state, available_at, seq);
