-- Peers seen by `ipcountry watch`, PostgreSQL flavour: the table of
-- migrations/sqlite/0004_peers.sql (read its notes), with BIGINT integers and "C"-collated key
-- text as in 0001.

CREATE TABLE peer_seen (
    kind       TEXT   COLLATE "C" NOT NULL,
    name       TEXT   COLLATE "C" NOT NULL,
    ip         TEXT   COLLATE "C" NOT NULL,
    country    TEXT   NOT NULL DEFAULT '',
    verdict    TEXT   NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (kind, name, ip)
);
