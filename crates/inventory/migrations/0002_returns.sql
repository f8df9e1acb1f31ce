-- Sold stock given back to sale because the order's payment could not be taken: one
-- row per order, so a repeated return gives nothing back twice.
CREATE TABLE stock_returns (
    order_id    TEXT   NOT NULL PRIMARY KEY REFERENCES reservations (order_id),
    returned_at BIGINT NOT NULL
);
