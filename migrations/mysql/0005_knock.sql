-- Knock users (issue 16), MariaDB/MySQL flavour: the table of migrations/sqlite/0005_knock.sql
-- (read its notes), with text of bounded length and the default collation (as in 0003/0004;
-- names are lower-case by construction, and Rust compares them exactly).

CREATE TABLE knock_user (
    name        VARCHAR(64)  NOT NULL,
    token_hash  VARCHAR(255) NOT NULL,
    ttl_seconds BIGINT       NOT NULL,
    created_at  BIGINT       NOT NULL,
    rotated_at  BIGINT       NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
