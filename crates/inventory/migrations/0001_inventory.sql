-- Inventory's schema, portable between SQLite and PostgreSQL.

-- Stock per product. What can be sold now is received - reserved - sold, and the
-- checks keep it from ever going negative, whatever races the application loses.
CREATE TABLE stock (
    product_id   TEXT    NOT NULL PRIMARY KEY,
    received     BIGINT  NOT NULL CHECK (received >= 0),
    reserved     BIGINT  NOT NULL CHECK (reserved >= 0),
    sold         BIGINT  NOT NULL CHECK (sold >= 0),
    -- 1 once the catalog deleted the product: nothing more is reserved.
    discontinued BIGINT  NOT NULL DEFAULT 0,
    updated_at   BIGINT  NOT NULL,
    CHECK (received - reserved - sold >= 0)
);

-- One reservation per order: its state moves held -> committed | released | expired,
-- or is rejected from the start. Replaying a command finds it and answers the same.
CREATE TABLE reservations (
    order_id   TEXT   NOT NULL PRIMARY KEY,
    state      TEXT   NOT NULL CHECK (state IN ('held', 'committed', 'released', 'expired', 'rejected')),
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX reservations_by_expiry ON reservations (state, expires_at);

CREATE TABLE reservation_lines (
    order_id   TEXT   NOT NULL REFERENCES reservations (order_id),
    product_id TEXT   NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
