//! The `ipcountry` binary, run as an admin would: the acceptance scenario, exit codes, JSON,
//! duplicates, bad input, and the plain-AGI mode over stdin/stdout.

use std::io::Write;
use std::process::{Command, Output, Stdio};

struct Cli {
    db: String,
    _dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file in `dir` on SQLite, a database of its own on a server (IPCOUNTRY_TEST_DB).
        let db = ipcountry::store::testing::fresh_db_url(dir.path());
        Cli { db, _dir: dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ipcountry"))
            .env("IPCOUNTRY_DB", &self.db)
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .expect("run ipcountry")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn acceptance_scenario() {
    let cli = Cli::new();
    let o = cli.run(&["permit", "add", "203.0.113.0/24", "--note", "office"]);
    assert!(o.status.success(), "{}", stderr(&o));
    if let Some(path) = cli.db.strip_prefix("sqlite://") {
        assert!(
            std::path::Path::new(path).exists(),
            "the database is created on first use"
        );
    }
    assert!(cli.run(&["deny", "add", "203.0.113.66"]).status.success());
    assert!(cli
        .run(&["allow-host", "add", "sipgate.com"])
        .status
        .success());

    // A source and the From as it is on the wire, as a call passes them.
    let o = cli.run(&[
        "check",
        "203.0.113.7:5060",
        r#""Bob" <sip:bob@203.0.113.7:5060>;tag=1"#,
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).lines().next(),
        Some("permitted (permit #1 203.0.113.0/24 office)")
    );
    // A stranger's source decides, whatever the From says.
    let o = cli.run(&["check", "198.51.100.9:5060", "<sip:bob@203.0.113.7>"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).lines().next(),
        Some("stranger (no permit range for 198.51.100.9)")
    );
    // A From that is not an address in the source's place is refused as such.
    let o = cli.run(&["check", "<sip:bob@203.0.113.7>"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).trim(), "stranger (bad source address)");

    let o = cli.run(&["check", "203.0.113.66"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).trim(), "denied (deny #1 203.0.113.66/32)");

    let o = cli.run(&["check", "198.51.100.9"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o).trim(),
        "stranger (no permit range for 198.51.100.9)"
    );

    let o = cli.run(&["check", "127.0.0.1", "<sip:bob@sipgate.com>"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).lines().next(),
        Some("permitted (allow-host sipgate.com)")
    );

    // Builtins: loopback is permitted unless turned off.
    assert_eq!(cli.run(&["check", "127.0.0.1"]).status.code(), Some(0));
    assert_eq!(
        cli.run(&["--no-builtins", "check", "127.0.0.1"])
            .status
            .code(),
        Some(1)
    );
}

/// A service starting while an admin runs a command: processes that open a new database at the
/// same moment all apply (or find applied) the migrations, none fails on the other's tables.
#[test]
fn processes_opening_a_new_database_at_once_all_succeed() {
    for _ in 0..3 {
        let cli = Cli::new();
        let children: Vec<_> = (0..6)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_ipcountry"))
                    .env("IPCOUNTRY_DB", &cli.db)
                    .env_remove("RUST_LOG")
                    .arg("status")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn ipcountry")
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().expect("wait for ipcountry");
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(stdout(&out).contains("generation"), "{}", stdout(&out));
        }
    }
}

#[test]
fn duplicates_are_reported_not_raw_errors() {
    let cli = Cli::new();
    assert!(cli
        .run(&["permit", "add", "203.0.113.0/24", "--note", "office"])
        .status
        .success());
    let o = cli.run(&["permit", "add", "203.0.113.0/24"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        r#"already in permit: #1 203.0.113.0/24 "office""#
    );
    // The same range written differently is the same entry.
    let o = cli.run(&["permit", "add", "203.0.113.0-203.0.113.255"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(cli
        .run(&["allow-host", "add", "*.example.com"])
        .status
        .success());
    let o = cli.run(&["allow-host", "add", "*.EXAMPLE.com"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("already in allow_host"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let cli = Cli::new();
    for (args, needle) in [
        (&["permit", "add", "203.0.113.7/24"][..], "host bits"),
        (&["permit", "add", "300.1.1.1"][..], "not an ip address"),
        (&["deny", "add", "10.0.0.9-10.0.0.1"][..], "after its end"),
        (
            &["allow-host", "add", "bad host"][..],
            "not a valid host name",
        ),
        (&["ip", "banana"][..], "not an ip address or integer"),
    ] {
        let o = cli.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).to_lowercase().contains(needle),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Nothing was written by the failed commands.
    assert_eq!(
        stdout(&cli.run(&["--no-builtins", "permit", "list"])).trim(),
        ""
    );
    assert_eq!(stdout(&cli.run(&["deny", "list"])).trim(), "");
    // An unopenable database is an error, exit 2, naming the path.
    let o = Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .args(["--db", "/nonexistent-dir/x.db", "permit", "list"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent-dir/x.db"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn list_remove_and_json() {
    let cli = Cli::new();
    assert!(cli
        .run(&["permit", "add", "203.0.113.0/24", "--note", "office"])
        .status
        .success());
    assert!(
        cli.run(&["permit", "add", "3405803776", "3405804031"])
            .status
            .code()
            == Some(1),
        "same range as integers is a duplicate"
    );
    assert!(cli
        .run(&["permit", "add", "2001:db8:1::/48"])
        .status
        .success());
    let o = cli.run(&["--no-builtins", "--json", "permit", "list"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = v.as_array().expect("array");
    assert_eq!(rows.len(), 2);
    // With builtins on (the default), the private and local ranges are listed too.
    let text = stdout(&cli.run(&["permit", "list"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with('-') && l.contains("10.0.0.0/8") && l.contains("builtin")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("fc00::/7")), "{text}");
    assert_eq!(text.lines().count(), 2 + 9, "{text}");
    assert_eq!(rows[0]["range"], "203.0.113.0/24");
    assert_eq!(rows[0]["note"], "office");
    assert_eq!(rows[0]["country"], "AA");
    assert_eq!(rows[1]["range"], "2001:db8:1::/48");

    let o = cli.run(&["permit", "rm", "#1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli.run(&["permit", "rm", "2001:db8:1::/48"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cli.run(&["permit", "rm", "1"]).status.code(), Some(1));

    let o = cli.run(&["--json", "check", "127.0.0.1:5060", "203.0.113.7"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verdict"], "stranger");
    assert_eq!(v["checks"].as_array().map(|a| a.len()), Some(2));
}

#[test]
fn reload_with_no_server_fails() {
    let cli = Cli::new();
    let o = cli.run(&["reload", "--server", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("no server answered at 127.0.0.1:1"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn listening_off_loopback_needs_allow_client() {
    let cli = Cli::new();
    let o = cli.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("needs --allow-client"),
        "{}",
        stderr(&o)
    );
    let o = cli.run(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--allow-client",
        "not-a-net",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a network or an address"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ip_utility() {
    let cli = Cli::new();
    let o = cli.run(&["ip", "203.0.113.0", "203.0.113.255"]);
    assert_eq!(stdout(&o), "3405803776\n3405804031\n");
    let o = cli.run(&["ip", "3405803776"]);
    assert_eq!(stdout(&o), "203.0.113.0\n");
    let o = cli.run(&["ip", "::1"]);
    assert_eq!(stdout(&o), "1\n");
    let o = cli.run(&["ip", "::ffff:203.0.113.0"]);
    assert_eq!(stdout(&o), "3405803776\n");
}

#[test]
fn help_on_every_command() {
    let cli = Cli::new();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["agi", "--help"],
        &["check", "--help"],
        &["ip", "--help"],
        &["permit", "--help"],
        &["permit", "add", "--help"],
        &["deny", "rm", "--help"],
        &["allow-host", "list", "--help"],
        &["reload", "--help"],
    ] {
        let o = cli.run(args);
        assert!(o.status.success(), "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn plain_agi_over_stdin_stdout() {
    let cli = Cli::new();
    assert!(cli.run(&["deny", "add", "203.0.113.66"]).status.success());
    let header = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/asterisk-agi/sessions/legacy-cut-ip.header.raw"),
    )
    .expect("fixture");
    let header = String::from_utf8(header)
        .expect("utf8")
        .replace("203.0.113.7", "203.0.113.66");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipcountry"))
        .env("IPCOUNTRY_DB", &cli.db)
        // What Asterisk puts on the command line for `AGI(ipcountry,agi,${SRC},${FROM})`: the
        // From is split at its commas, and taken whole, flags and all.
        .args(["agi", "127.0.0.1", "--trust=from", "<sip:x@203.0.113.66>"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    // Asterisk writes the block and answers each command; replies can be queued up front here
    // since the AGI reads them one at a time.
    stdin.write_all(header.as_bytes()).expect("write");
    stdin.write_all(b"200 result=0\n").expect("write");
    drop(stdin);
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "EXEC MSet \"STRANGER=true,IPCOUNTRY_VERDICT=denied,IPCOUNTRY_REASON=deny #1 203.0.113.66/32\"\n"
    );
}

/// `ipcountry` with only the environment given (no IPCOUNTRY_DB from the test harness).
fn bare(envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ipcountry"));
    c.env_remove("IPCOUNTRY_DB").env_remove("RUST_LOG");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.args(args).output().expect("run ipcountry")
}

#[test]
fn one_configuration_file_under_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("from-file.db");
    let conf = dir.path().join("ipcountry.toml");
    std::fs::write(
        &conf,
        format!(
            "db = \"sqlite://{}\"\ntrust = \"source\"\n\n[serve]\nmax_sessions = 77\npoll = \"7s\"\n",
            db.display()
        ),
    )
    .expect("write");
    let conf = conf.display().to_string();
    // Every command reads it: `permit add` writes the file's database, from any directory.
    let o = bare(&[], &["--config", &conf, "permit", "add", "203.0.113.0/24"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(db.exists(), "the database named in the file");
    // `config check`: the value and where it came from; file < env < flag.
    let o = bare(
        &[("IPCOUNTRY_POLL", "9s")],
        &["--config", &conf, "config", "check"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("max_sessions")[1..],
        ["77", "file", &format!("{conf}:5")]
    );
    assert_eq!(row("poll")[1..], ["9s", "env", "IPCOUNTRY_POLL"]);
    assert_eq!(row("trust")[1..], ["source", "file", &format!("{conf}:2")]);
    assert_eq!(row("grace")[1..], ["5s", "default"]);
    // A flag beats both; `check` decides with the file's trust mode, as `serve` would.
    let o = bare(
        &[],
        &[
            "--config",
            &conf,
            "check",
            "203.0.113.7",
            "<sip:x@198.51.100.9>",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "--trust source from the file: {}",
        stdout(&o)
    );
    let o = bare(
        &[],
        &[
            "--config",
            &conf,
            "check",
            "--trust",
            "both",
            "203.0.113.7",
            "<sip:x@198.51.100.9>",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // The file the package installs is valid, and names the packaged database.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/ipcountry.toml");
    let o = bare(&[], &["--config", shipped, "config", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("sqlite:///var/lib/ipcountry/ipcountry.db"),
        "{}",
        stdout(&o)
    );
    // An unknown key is refused with its name and line, and nothing runs.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[serve]\nmax_sessions = 3\nlisen = \"x\"\n",
    )
    .expect("write");
    let bad = dir.path().join("bad.toml").display().to_string();
    let o = bare(&[], &["--config", &bad, "status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{bad}:3: `lisen` in [serve]")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn database_passwords_are_never_printed() {
    // Port 1 on loopback: the connection is refused at once.
    for url in [
        "mysql://ipc:s3cret@127.0.0.1:1/ipcountry",
        "postgres://ipc:s3cret@127.0.0.1:1/ipcountry",
    ] {
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_ipcountry"))
                .env("IPCOUNTRY_DB", url)
                .env_remove("RUST_LOG")
                .args(args)
                .output()
                .expect("run ipcountry")
        };
        let help = run(&["--help"]);
        assert!(help.status.success());
        assert!(!stdout(&help).contains("s3cret"), "{}", stdout(&help));
        let o = run(&["permit", "list"]);
        assert_eq!(o.status.code(), Some(2));
        let err = stderr(&o);
        assert!(err.contains("ipc:***@127.0.0.1:1/ipcountry"), "{err}");
        assert!(err.contains("cannot reach the server"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
