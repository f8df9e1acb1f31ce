-- One row per customer whose payment was recorded: a new payment's transaction takes
-- its customer's row first (an upsert), so the velocity rule counts the customer's
-- recent payments with every concurrent one either committed or waiting behind it.
CREATE TABLE customer_locks (
    customer_id TEXT   NOT NULL PRIMARY KEY,
    locked_at   BIGINT NOT NULL
);
