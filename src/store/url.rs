//! Database URLs as they may be shown: [`redact_url`] drops the password, so that messages,
//! logs, `status` and `--help` never print it.

/// `url` without its password: the user-info's password becomes `***`
/// (`mysql://ipcountry:secret@db/x` → `mysql://ipcountry:***@db/x`), and so does the value of a
/// `password=` query parameter. Anything that is not a URL (a SQLite path) is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_never_shown() {
        for (url, shown) in [
            (
                "mysql://ipc:s3cr:et@127.0.0.1:3306/ipcountry",
                "mysql://ipc:***@127.0.0.1:3306/ipcountry",
            ),
            (
                "postgres://ipc:p%40ss@db.example/x?sslmode=disable",
                "postgres://ipc:***@db.example/x?sslmode=disable",
            ),
            (
                "postgres://db/x?user=ipc&password=secret",
                "postgres://db/x?user=ipc&password=***",
            ),
            (
                "mariadb://ipc@localhost/ipcountry",
                "mariadb://ipc@localhost/ipcountry",
            ),
            ("mysql://u:p@h", "mysql://u:***@h"),
            ("sqlite://ipcountry.db", "sqlite://ipcountry.db"),
            ("./ipcountry.db", "./ipcountry.db"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
