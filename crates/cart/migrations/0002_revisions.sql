-- A cart's revision grows with each line it gains, and is at least the time of that
-- change in ms, so it keeps growing when a dropped cart starts again. Each line keeps
-- the revision that created it: a confirmed order takes its lines only out of lines
-- that were in the cart when the order was placed.
ALTER TABLE carts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cart_lines ADD COLUMN since BIGINT NOT NULL DEFAULT 0;
