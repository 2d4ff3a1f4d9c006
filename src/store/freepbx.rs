//! Reading FreePBX's own configuration tables (its `asterisk` database on MariaDB/MySQL), for
//! `whitelist-gen`: a separate, read-only connection; nothing is written there.
//!
//! The schema is FreePBX core's, `module.xml` of FreePBX/core 16.0.68.30 (`<database>`:
//! tables `sip`, `pjsip`, `iax` as `id`, `keyword`, `data`, `flags` rows; `trunks` with
//! `trunkid`, `name`, `tech`, `channelid`, `disabled`; `devices` with `id`, `tech`,
//! `description`). chan_sip and IAX2 trunks are the rows with id `tr-peer-<trunkid>`
//! (`Core.class.php`), PJSIP trunks have the trunk id itself (`functions.inc/drivers/PJSip.class.php`,
//! keywords `sip_server`, `match`, `trunk_name`); extensions are the rows with the
//! extension's number as id. Only the keywords that name hosts are read.

use sqlx::{Connection, Row};

use super::{redact_url, StoreError};

/// One `id`/`keyword`/`data` row of `sip`, `pjsip` or `iax`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TechRow {
    /// `sip`, `pjsip` or `iax`.
    pub table: &'static str,
    /// `tr-peer-3`, `3` (a PJSIP trunk), `101` (an extension).
    pub id: String,
    /// `host`, `sip_server`, `match`, `trunk_name`.
    pub keyword: String,
    /// The value.
    pub data: String,
}

/// One row of `trunks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRow {
    /// `trunkid`.
    pub id: i64,
    /// The trunk's name.
    pub name: String,
    /// `sip`, `pjsip`, `iax`, ...
    pub tech: String,
    /// Whether `disabled` is `on`.
    pub disabled: bool,
}

/// What whitelist-gen reads.
#[derive(Debug, Clone, Default)]
pub struct FreePbxRows {
    /// Host-naming rows of the technology tables.
    pub tech: Vec<TechRow>,
    /// The trunks.
    pub trunks: Vec<TrunkRow>,
    /// Technology tables this FreePBX does not have.
    pub missing: Vec<&'static str>,
}

/// The keywords that name hosts (and `trunk_name`, the PJSIP trunk's name).
const KEYWORDS: [&str; 4] = ["host", "sip_server", "match", "trunk_name"];

/// Reads the rows from the FreePBX database at `url` (`mysql://user:pw@host/asterisk`).
pub async fn read(url: &str) -> Result<FreePbxRows, StoreError> {
    let url = url.replacen("mariadb://", "mysql://", 1);
    let mut conn = sqlx::MySqlConnection::connect(&url)
        .await
        .map_err(|error| StoreError::Connect {
            url: redact_url(&url),
            error,
        })?;
    let q = |source| StoreError::Query {
        context: "reading the FreePBX tables",
        source,
    };
    let mut rows = FreePbxRows::default();
    for table in ["sip", "pjsip", "iax"] {
        // The table name is one of three constants; the keywords are bound.
        let sql = format!(
            "SELECT CAST(id AS CHAR), CAST(keyword AS CHAR), CAST(data AS CHAR) FROM {table} \
             WHERE keyword IN (?, ?, ?, ?) ORDER BY id, keyword"
        );
        let mut query = sqlx::query(&sql);
        for k in KEYWORDS {
            query = query.bind(k);
        }
        let found = match query.fetch_all(&mut conn).await {
            Ok(found) => found,
            // A FreePBX without that technology's table (no PJSIP on an old one, say).
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42S02") => {
                rows.missing.push(table);
                continue;
            }
            Err(e) => return Err(q(e)),
        };
        for row in found {
            rows.tech.push(TechRow {
                table,
                id: row
                    .try_get::<Option<String>, _>(0)
                    .map_err(q)?
                    .unwrap_or_default(),
                keyword: row
                    .try_get::<Option<String>, _>(1)
                    .map_err(q)?
                    .unwrap_or_default(),
                data: row
                    .try_get::<Option<String>, _>(2)
                    .map_err(q)?
                    .unwrap_or_default(),
            });
        }
    }
    let trunks = sqlx::query(
        "SELECT CAST(trunkid AS SIGNED), CAST(name AS CHAR), CAST(tech AS CHAR), \
         CAST(COALESCE(disabled, 'off') AS CHAR) FROM trunks ORDER BY trunkid",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(q)?;
    for row in trunks {
        rows.trunks.push(TrunkRow {
            id: row.try_get(0).map_err(q)?,
            name: row
                .try_get::<Option<String>, _>(1)
                .map_err(q)?
                .unwrap_or_default(),
            tech: row
                .try_get::<Option<String>, _>(2)
                .map_err(q)?
                .unwrap_or_default(),
            disabled: row.try_get::<Option<String>, _>(3).map_err(q)?.as_deref() == Some("on"),
        });
    }
    let _ = conn.close().await;
    Ok(rows)
}
