-- Country catalogs (issue 3), SQLite flavour. Never edit 0001; this file only adds tables.
--
-- The catalog is a data repository: importing one changes no verdict. `ipcountry country add US`
-- records the country in `permitted_country` and copies its catalog ranges into `permit` as
-- rules with source 'geolite' and country_code 'US'; `refresh` replaces the catalog and
-- regenerates those rules in the same transaction.
--
-- Portability notes (as in 0001): addresses are big-endian bytes (4 or 16), compared bytewise;
-- `length()` on a BLOB is the byte count in SQLite, MariaDB (`LENGTH`) and PostgreSQL
-- (`length(bytea)`); times are Unix seconds written by the application; no SQLite-only
-- functions. There are no foreign keys between these tables and `permit`, on purpose: the
-- catalog is replaced wholesale while the rules generated from it stay until the same
-- transaction regenerates them.

-- One row per merged range of one country. A country's ranges are disjoint, so
-- (country_code, family, start_ip) is a key; it is also the order in which rules are generated.
CREATE TABLE catalog (
    country_code TEXT    NOT NULL CHECK (length(country_code) = 2),
    family       INTEGER NOT NULL CHECK (family IN (4, 6)),
    start_ip     BLOB    NOT NULL,
    end_ip       BLOB    NOT NULL,
    CHECK ((family = 4 AND length(start_ip) = 4 AND length(end_ip) = 4)
        OR (family = 6 AND length(start_ip) = 16 AND length(end_ip) = 16)),
    CHECK (start_ip <= end_ip),
    PRIMARY KEY (country_code, family, start_ip)
);

-- One row per country of the catalog, with its range counts (for `ipcountry countries`).
CREATE TABLE country (
    code      TEXT   NOT NULL PRIMARY KEY CHECK (length(code) = 2),
    name      TEXT   NOT NULL DEFAULT '',
    v4_ranges BIGINT NOT NULL,
    v6_ranges BIGINT NOT NULL
);

-- Where the catalog came from: one row, id 1, present once a catalog has been imported.
-- `source` is a JSON array of the file paths as given.
CREATE TABLE catalog_meta (
    id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    source        TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    built_at      BIGINT,
    database_type TEXT,
    networks      BIGINT  NOT NULL,
    imported_at   BIGINT  NOT NULL
);

-- The countries whose catalog ranges are permitted (`ipcountry country add`).
CREATE TABLE permitted_country (
    code     TEXT   NOT NULL PRIMARY KEY CHECK (length(code) = 2),
    added_at BIGINT NOT NULL
);
