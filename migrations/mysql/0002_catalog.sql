-- Country catalogs, MariaDB/MySQL flavour: the tables of migrations/sqlite/0002_catalog.sql
-- (read its notes), with VARBINARY(16) addresses and BIGINT integers as in 0001.

CREATE TABLE catalog (
    country_code VARCHAR(2)    NOT NULL CHECK (LENGTH(country_code) = 2),
    family       BIGINT        NOT NULL CHECK (family IN (4, 6)),
    start_ip     VARBINARY(16) NOT NULL,
    end_ip       VARBINARY(16) NOT NULL,
    CHECK ((family = 4 AND LENGTH(start_ip) = 4 AND LENGTH(end_ip) = 4)
        OR (family = 6 AND LENGTH(start_ip) = 16 AND LENGTH(end_ip) = 16)),
    CHECK (start_ip <= end_ip),
    PRIMARY KEY (country_code, family, start_ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE country (
    code      VARCHAR(2) NOT NULL PRIMARY KEY CHECK (LENGTH(code) = 2),
    name      TEXT       NOT NULL,
    v4_ranges BIGINT     NOT NULL,
    v6_ranges BIGINT     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE catalog_meta (
    id            BIGINT      NOT NULL PRIMARY KEY CHECK (id = 1),
    source        TEXT        NOT NULL,
    format        VARCHAR(32) NOT NULL,
    built_at      BIGINT,
    database_type TEXT,
    networks      BIGINT      NOT NULL,
    imported_at   BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE permitted_country (
    code     VARCHAR(2) NOT NULL PRIMARY KEY CHECK (LENGTH(code) = 2),
    added_at BIGINT     NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
