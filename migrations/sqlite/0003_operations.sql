-- Operations (issue 12), SQLite flavour. Never edit 0001/0002; this file only adds.
--
-- Rules and allowed hosts that expire: `expires_at` is Unix seconds, NULL for never. An expired
-- row stays (listed as expired) until `ipcountry purge` deletes it; it stops matching at its time.
-- Shadow rules: `shadow` 1 means the rule is logged when it matches, as if it decided, and
-- decides nothing. BIGINT 0/1 rather than a boolean type, so that the three backends read it
-- with one type.
--
-- Servers: every running `ipcountry serve` keeps one row here (its own id), written at start and
-- at every heartbeat, so `status` can list who screens with this database and a change can say
-- when nobody does. Writing it never bumps the generation.

ALTER TABLE permit ADD COLUMN expires_at BIGINT;
ALTER TABLE permit ADD COLUMN shadow BIGINT NOT NULL DEFAULT 0 CHECK (shadow IN (0, 1));
ALTER TABLE deny ADD COLUMN expires_at BIGINT;
ALTER TABLE deny ADD COLUMN shadow BIGINT NOT NULL DEFAULT 0 CHECK (shadow IN (0, 1));
ALTER TABLE allow_host ADD COLUMN expires_at BIGINT;

CREATE TABLE server (
    id         TEXT   NOT NULL PRIMARY KEY,
    host       TEXT   NOT NULL,
    pid        BIGINT NOT NULL,
    listen     TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    loaded_at  BIGINT NOT NULL,
    heartbeat  BIGINT NOT NULL
);
