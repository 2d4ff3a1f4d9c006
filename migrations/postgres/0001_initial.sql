-- ipcountry schema, PostgreSQL flavour (embedded with `sqlx::migrate!("./migrations/postgres")`).
-- The same tables as migrations/sqlite/0001_initial.sql; read its portability notes. Here:
--   * `start_ip` / `end_ip` are BYTEA: big-endian bytes, compared byte by byte (memcmp, then
--     length), so `ORDER BY family, start_ip` is address order, for 128-bit IPv6 values too.
--   * Integers are BIGINT (read as i64 everywhere); ids are identity columns, never reused.
--   * Text that is matched or ordered (patterns, codes) uses the "C" collation: byte order,
--     as in SQLite.

CREATE TABLE permit (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    family       BIGINT NOT NULL CHECK (family IN (4, 6)),
    start_ip     BYTEA  NOT NULL,
    end_ip       BYTEA  NOT NULL,
    country_code TEXT   COLLATE "C" NOT NULL,
    source       TEXT   COLLATE "C" NOT NULL,
    note         TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    UNIQUE (family, start_ip, end_ip)
);

CREATE INDEX permit_family_start ON permit (family, start_ip);

CREATE TABLE deny (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    family       BIGINT NOT NULL CHECK (family IN (4, 6)),
    start_ip     BYTEA  NOT NULL,
    end_ip       BYTEA  NOT NULL,
    country_code TEXT   COLLATE "C" NOT NULL,
    source       TEXT   COLLATE "C" NOT NULL,
    note         TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    UNIQUE (family, start_ip, end_ip)
);

CREATE INDEX deny_family_start ON deny (family, start_ip);

-- Host names whose callers are let through: a lower-cased name or `*.example.com`.
CREATE TABLE allow_host (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pattern    TEXT   COLLATE "C" NOT NULL UNIQUE,
    note       TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- The policy generation counter: one row, id 1.
CREATE TABLE generation (
    id    BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);

INSERT INTO generation (id, value) VALUES (1, 0);
