-- Knock users (issue 16), SQLite flavour. Never edit 0001..0004; this file only adds.
--
-- One row per user of the knock page (`ipcountry knock-user add alice --ttl 12h`): `name` is
-- what the token starts with (`alice.`; lower-case letters, digits, `-`, `_`); `token_hash` the
-- argon2 PHC string of the token's secret (salted; the token itself is never stored);
-- `ttl_seconds` how long a knock's permit entry lasts; times are Unix seconds written by the
-- application. The permit entries a knock adds are ordinary rows of `permit` (source custom,
-- note `knock:<name>`, `expires_at` set), so every part of the policy sees them as it sees any
-- expiring entry. Writing this table never bumps the generation: it is not policy.

CREATE TABLE knock_user (
    name        TEXT   NOT NULL PRIMARY KEY,
    token_hash  TEXT   NOT NULL,
    ttl_seconds BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    rotated_at  BIGINT NOT NULL
);
