-- ipcountry schema, SQLite flavour (embedded with `sqlx::migrate!("./migrations/sqlite")`).
--
-- Portability notes, for the MariaDB / PostgreSQL variants of this file:
--   * `start_ip` / `end_ip` hold the BIG-ENDIAN bytes of the address: 4 bytes for IPv4, 16 for
--     IPv6. Big-endian bytes compare bytewise exactly like the integers they encode, so
--     `ORDER BY family, start_ip` is address order. SQLite compares BLOBs with memcmp();
--     MariaDB VARBINARY(16) and PostgreSQL BYTEA also compare bytewise, so the same encoding and
--     the same queries work there (VARBINARY(16) / BYTEA replace BLOB).
--   * `id INTEGER PRIMARY KEY AUTOINCREMENT` means ids are never reused, even after the highest
--     row is deleted (`permit #12` always names one rule). MariaDB: BIGINT AUTO_INCREMENT;
--     PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY.
--   * `created_at` is Unix seconds, written by the application (no DB-specific default).
--   * `generation` has exactly one row; every change bumps it in the same transaction as the
--     change, so a reloader can tell whether anything changed by reading one number.
--   * No SQLite-only functions, no `INSERT OR IGNORE`. The code uses `INSERT ... RETURNING id`,
--     supported by SQLite >= 3.35, PostgreSQL and MariaDB >= 10.5 (MariaDB has no
--     `UPDATE ... RETURNING`, so the code does not use it).

CREATE TABLE permit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    family       INTEGER NOT NULL CHECK (family IN (4, 6)),
    start_ip     BLOB    NOT NULL,
    end_ip       BLOB    NOT NULL,
    country_code TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    note         TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    UNIQUE (family, start_ip, end_ip)
);

-- Lookup by (family, start_ip). The UNIQUE constraint's index already has this prefix, but an
-- explicit index keeps the intent visible and survives a change to the constraint.
CREATE INDEX permit_family_start ON permit (family, start_ip);

CREATE TABLE deny (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    family       INTEGER NOT NULL CHECK (family IN (4, 6)),
    start_ip     BLOB    NOT NULL,
    end_ip       BLOB    NOT NULL,
    country_code TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    note         TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    UNIQUE (family, start_ip, end_ip)
);

CREATE INDEX deny_family_start ON deny (family, start_ip);

-- Host names whose callers are let through: a lower-cased name or `*.example.com`.
CREATE TABLE allow_host (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    pattern    TEXT    NOT NULL UNIQUE,
    note       TEXT    NOT NULL DEFAULT '',
    created_at BIGINT  NOT NULL
);

-- The policy generation counter: one row, id 1.
CREATE TABLE generation (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);

INSERT INTO generation (id, value) VALUES (1, 0);
