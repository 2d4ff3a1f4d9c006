-- Peers seen by `ipcountry watch`, MariaDB/MySQL flavour: the table of
-- migrations/sqlite/0004_peers.sql (read its notes), with key columns of bounded length
-- (an InnoDB key is at most 3072 bytes; utf8mb4 takes 4 a character). The default collation, as
-- in 0003: a `_bin` one would make sqlx read the text columns as VARBINARY. The key then
-- ignores case, so peers `Alice` and `alice` at one address share a row (Rust compares exactly).

CREATE TABLE peer_seen (
    kind       VARCHAR(32)  NOT NULL,
    name       VARCHAR(190) NOT NULL,
    ip         VARCHAR(64)  NOT NULL,
    country    VARCHAR(8)   NOT NULL DEFAULT '',
    verdict    VARCHAR(16)  NOT NULL,
    first_seen BIGINT       NOT NULL,
    last_seen  BIGINT       NOT NULL,
    PRIMARY KEY (kind, name, ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
