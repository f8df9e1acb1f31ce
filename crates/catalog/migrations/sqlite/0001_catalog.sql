-- The catalog's schema on SQLite. Keep in step with ../postgres/0001_catalog.sql:
-- the same tables, columns and meaning; only the dialect differs.

CREATE TABLE categories (
    id          TEXT    NOT NULL PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    position    BIGINT  NOT NULL
);

CREATE TABLE products (
    id          TEXT    NOT NULL PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    category_id TEXT    NOT NULL REFERENCES categories (id),
    price_minor BIGINT  NOT NULL CHECK (price_minor >= 0),
    currency    TEXT    NOT NULL CHECK (length(currency) = 3),
    image       TEXT    NOT NULL,
    -- A JSON object of string values.
    attributes  TEXT    NOT NULL,
    -- Lower-cased name and description, what search words are matched against.
    search_text TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- Keyset pagination walks these in both directions.
CREATE INDEX products_by_name ON products (name, id);
CREATE INDEX products_by_price ON products (price_minor, id);
CREATE INDEX products_by_category ON products (category_id);

-- One row per seed data set applied, so demo data loads on first start only.
CREATE TABLE seeds (
    name       TEXT   NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
