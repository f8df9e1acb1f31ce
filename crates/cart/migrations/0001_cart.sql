-- The cart's schema, portable between SQLite and PostgreSQL.

-- One row per cart. Every change to a cart first writes this row, which serialises
-- concurrent changes to one cart (a row lock on PostgreSQL, the write lock on SQLite),
-- and records when the customer last touched it: carts untouched for too long expire.
CREATE TABLE carts (
    customer_id TEXT   NOT NULL PRIMARY KEY,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX carts_by_age ON carts (updated_at);

CREATE TABLE cart_lines (
    customer_id TEXT   NOT NULL,
    product_id  TEXT   NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (customer_id, product_id)
);

-- Orders whose lines were already taken out of their customer's cart: a confirmation
-- delivered again finds its order here and changes nothing.
CREATE TABLE processed_orders (
    order_id     TEXT   NOT NULL PRIMARY KEY,
    customer_id  TEXT   NOT NULL,
    processed_at BIGINT NOT NULL
);

CREATE INDEX processed_orders_by_age ON processed_orders (processed_at);
