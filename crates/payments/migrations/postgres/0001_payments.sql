-- Payments' schema, PostgreSQL dialect. Kept in step with ../sqlite: the same tables and
-- meaning; only the triggers that keep the ledger append-only differ.

-- Customers payments has heard of from identity, for the fraud rules' account age.
CREATE TABLE customers (
    customer_id   TEXT   NOT NULL PRIMARY KEY,
    registered_at BIGINT NOT NULL
);

-- Saved cards: Bazaar's token, the processor's opaque reference, and what may be shown.
-- Never the number or the security code. Deleting one sets deleted_at, so payments
-- that used it keep their history.
CREATE TABLE payment_methods (
    token         TEXT   NOT NULL PRIMARY KEY,
    customer_id   TEXT   NOT NULL,
    processor_ref TEXT   NOT NULL,
    brand         TEXT   NOT NULL,
    last4         TEXT   NOT NULL CHECK (length(last4) = 4),
    exp_month     BIGINT NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);

CREATE INDEX payment_methods_by_customer ON payment_methods (customer_id, created_at);

-- One payment per order. A void that arrives before any authorization leaves a
-- tombstone (state voided, no customer, no amount), so a late authorization is declined.
CREATE TABLE payments (
    order_id         TEXT   NOT NULL PRIMARY KEY,
    state            TEXT   NOT NULL
        CHECK (state IN ('held', 'authorized', 'declined', 'captured', 'voided', 'refunded')),
    customer_id      TEXT,
    payment_method   TEXT,
    amount_minor     BIGINT,
    currency         TEXT,
    -- The fraud rules' reasons for a hold, comma-separated; empty if none.
    hold_reasons     TEXT   NOT NULL DEFAULT '',
    decline_reason   TEXT,
    authorization_id TEXT,
    capture_id       TEXT,
    refund_id        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CHECK ((customer_id IS NULL) = (amount_minor IS NULL)),
    CHECK ((amount_minor IS NULL) = (currency IS NULL)),
    CHECK (customer_id IS NOT NULL OR state = 'voided'),
    CHECK (state NOT IN ('held', 'authorized', 'captured', 'refunded') OR authorization_id IS NOT NULL),
    CHECK (state NOT IN ('captured', 'refunded') OR capture_id IS NOT NULL),
    CHECK (state <> 'refunded' OR refund_id IS NOT NULL),
    CHECK (state <> 'declined' OR decline_reason IS NOT NULL)
);

-- The velocity rule counts a customer's recent payments.
CREATE INDEX payments_by_customer ON payments (customer_id, created_at);

-- The double-entry ledger. A transaction groups entries whose debits equal their
-- credits; an order has at most one transaction of each kind.
CREATE TABLE ledger_transactions (
    id         TEXT   NOT NULL PRIMARY KEY,
    order_id   TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('authorize', 'void', 'capture', 'refund')),
    currency   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (order_id, kind)
);

CREATE TABLE ledger_entries (
    transaction_id TEXT   NOT NULL REFERENCES ledger_transactions (id),
    line           BIGINT NOT NULL,
    account        TEXT   NOT NULL
        CHECK (account IN ('customer_funds', 'authorized_holds', 'merchant_revenue')),
    direction      TEXT   NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount_minor   BIGINT NOT NULL CHECK (amount_minor > 0),
    currency       TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, line)
);

CREATE INDEX ledger_entries_by_account ON ledger_entries (account, currency);

-- The ledger is append-only: the database itself refuses to change or remove history.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_transactions_no_truncate
    BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
