-- The trace each order was placed in, so that an admin can go from an order to it.
ALTER TABLE order_views ADD COLUMN trace_id TEXT;
