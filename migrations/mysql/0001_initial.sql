-- ipcountry schema, MariaDB/MySQL flavour (embedded with `sqlx::migrate!("./migrations/mysql")`).
-- The same tables as migrations/sqlite/0001_initial.sql; read its portability notes. Here:
--   * `start_ip` / `end_ip` are VARBINARY(16): big-endian bytes, compared byte by byte (binary
--     strings have no collation and no pad attribute), so `ORDER BY family, start_ip` is address
--     order, for 128-bit IPv6 values too.
--   * Integers are BIGINT (read as i64 everywhere); ids are AUTO_INCREMENT, never reused
--     (InnoDB keeps the counter across restarts since MariaDB 10.2.4 / MySQL 8).
--   * Text is utf8mb4 in the server's default collation. Exact text matches that matter
--     (allow_host patterns) are checked again by the application, which also sorts text itself.
--   * TEXT columns take no DEFAULT before MySQL 8.0.13: the application always writes `note`.

CREATE TABLE permit (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    family       BIGINT        NOT NULL CHECK (family IN (4, 6)),
    start_ip     VARBINARY(16) NOT NULL,
    end_ip       VARBINARY(16) NOT NULL,
    country_code VARCHAR(16)   NOT NULL,
    source       VARCHAR(16)   NOT NULL,
    note         TEXT          NOT NULL,
    created_at   BIGINT        NOT NULL,
    UNIQUE KEY permit_range (family, start_ip, end_ip),
    KEY permit_family_start (family, start_ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE deny (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    family       BIGINT        NOT NULL CHECK (family IN (4, 6)),
    start_ip     VARBINARY(16) NOT NULL,
    end_ip       VARBINARY(16) NOT NULL,
    country_code VARCHAR(16)   NOT NULL,
    source       VARCHAR(16)   NOT NULL,
    note         TEXT          NOT NULL,
    created_at   BIGINT        NOT NULL,
    UNIQUE KEY deny_range (family, start_ip, end_ip),
    KEY deny_family_start (family, start_ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Host names whose callers are let through: a lower-cased name or `*.example.com`.
CREATE TABLE allow_host (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    pattern    VARCHAR(255) NOT NULL,
    note       TEXT         NOT NULL,
    created_at BIGINT       NOT NULL,
    UNIQUE KEY allow_host_pattern (pattern)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The policy generation counter: one row, id 1.
CREATE TABLE generation (
    id    BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
) ENGINE = InnoDB;

INSERT INTO generation (id, value) VALUES (1, 0);
