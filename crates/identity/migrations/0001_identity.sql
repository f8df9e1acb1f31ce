-- Identity's schema, portable between SQLite and PostgreSQL.

CREATE TABLE users (
    id            TEXT   NOT NULL PRIMARY KEY,
    -- Normalised (trimmed, lower-cased); unique.
    email         TEXT   NOT NULL UNIQUE,
    -- Argon2id PHC string.
    password_hash TEXT   NOT NULL,
    -- Comma-separated role names.
    roles         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Refresh tokens are stored only as SHA-256 hashes. Each use creates the next token in
-- the same family; presenting a used token again revokes the whole family.
CREATE TABLE refresh_tokens (
    id          TEXT   NOT NULL PRIMARY KEY,
    token_hash  TEXT   NOT NULL UNIQUE,
    family_id   TEXT   NOT NULL,
    user_id     TEXT   NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);

-- Ed25519 signing keys. The newest unretired key signs; retired keys stay published
-- in the JWKS until every token they signed has expired.
CREATE TABLE signing_keys (
    kid        TEXT   NOT NULL PRIMARY KEY,
    -- The 32-byte private seed, base64.
    seed       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
