-- Peers seen by `ipcountry watch` (issue 14), SQLite flavour. Never edit 0001..0003; this file
-- only adds.
--
-- One row per (kind, peer, address) the watcher has seen: `kind` is pjsip-contact,
-- pjsip-registration, sip or iax; `name` the endpoint or peer; `ip` the screened address in its
-- standard text form (no port: a NAT rebinding changes the port, not the location); `country`
-- the catalog's code for it ('' when unknown); `verdict` permitted, denied or stranger. Times
-- are Unix milliseconds written by the application (two passes may fall in one second). A new
-- address for a peer is what drift detection looks for, and the row keeps an alert from
-- repeating on the next pass. Writing it never bumps the generation: it is not policy.

CREATE TABLE peer_seen (
    kind       TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    ip         TEXT   NOT NULL,
    country    TEXT   NOT NULL DEFAULT '',
    verdict    TEXT   NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (kind, name, ip)
);
