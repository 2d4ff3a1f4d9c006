-- Country catalogs, PostgreSQL flavour: the tables of migrations/sqlite/0002_catalog.sql
-- (read its notes), with BYTEA addresses, BIGINT integers and "C"-collated codes as in 0001.

CREATE TABLE catalog (
    country_code TEXT   COLLATE "C" NOT NULL CHECK (length(country_code) = 2),
    family       BIGINT NOT NULL CHECK (family IN (4, 6)),
    start_ip     BYTEA  NOT NULL,
    end_ip       BYTEA  NOT NULL,
    CHECK ((family = 4 AND length(start_ip) = 4 AND length(end_ip) = 4)
        OR (family = 6 AND length(start_ip) = 16 AND length(end_ip) = 16)),
    CHECK (start_ip <= end_ip),
    PRIMARY KEY (country_code, family, start_ip)
);

CREATE TABLE country (
    code      TEXT   COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(code) = 2),
    name      TEXT   NOT NULL DEFAULT '',
    v4_ranges BIGINT NOT NULL,
    v6_ranges BIGINT NOT NULL
);

CREATE TABLE catalog_meta (
    id            BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    source        TEXT   NOT NULL,
    format        TEXT   NOT NULL,
    built_at      BIGINT,
    database_type TEXT,
    networks      BIGINT NOT NULL,
    imported_at   BIGINT NOT NULL
);

CREATE TABLE permitted_country (
    code     TEXT   COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(code) = 2),
    added_at BIGINT NOT NULL
);
