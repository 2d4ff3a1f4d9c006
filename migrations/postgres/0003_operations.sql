-- Operations, PostgreSQL flavour: the columns and table of migrations/sqlite/0003_operations.sql
-- (read its notes), with BIGINT integers and "C"-collated text as in 0001.

ALTER TABLE permit
    ADD COLUMN expires_at BIGINT,
    ADD COLUMN shadow BIGINT NOT NULL DEFAULT 0 CHECK (shadow IN (0, 1));
ALTER TABLE deny
    ADD COLUMN expires_at BIGINT,
    ADD COLUMN shadow BIGINT NOT NULL DEFAULT 0 CHECK (shadow IN (0, 1));
ALTER TABLE allow_host ADD COLUMN expires_at BIGINT;

CREATE TABLE server (
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    host       TEXT   NOT NULL,
    pid        BIGINT NOT NULL,
    listen     TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    loaded_at  BIGINT NOT NULL,
    heartbeat  BIGINT NOT NULL
);
