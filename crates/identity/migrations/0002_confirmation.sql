-- An account is usable once its address is confirmed: registration writes to the
-- address instead of saying whether it had an account, so that nobody learns which
-- addresses have accounts. A new account keeps the SHA-256 of its one-time token until
-- it is confirmed; unconfirmed accounts whose token expired are deleted.
ALTER TABLE users ADD COLUMN confirmed_at BIGINT;
ALTER TABLE users ADD COLUMN confirmation_hash TEXT;
ALTER TABLE users ADD COLUMN confirmation_expires_at BIGINT;
-- When a registration of the address was last mailed (a link, or word that it has an
-- account): at most one such email per address in a window, so nobody can flood an
-- address by registering it over and over.
ALTER TABLE users ADD COLUMN registration_mailed_at BIGINT;

-- Every account made before confirmation existed counts as confirmed.
UPDATE users SET confirmed_at = created_at;

CREATE UNIQUE INDEX users_by_confirmation ON users (confirmation_hash);
CREATE INDEX users_unconfirmed ON users (confirmation_expires_at);
