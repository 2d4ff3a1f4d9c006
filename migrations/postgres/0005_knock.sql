-- Knock users (issue 16), PostgreSQL flavour: the table of migrations/sqlite/0005_knock.sql
-- (read its notes), with "C"-collated key text as in 0001.

CREATE TABLE knock_user (
    name        TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    token_hash  TEXT   NOT NULL,
    ttl_seconds BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    rotated_at  BIGINT NOT NULL
);
