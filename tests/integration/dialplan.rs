//! The shipped dialplan (`dialplan/extensions_override_freepbx.conf`) keeps the argument
//! contract and fails closed. There is no Asterisk here to run it; these checks read the
//! priorities of `[app-blacklist-check]` in order.

fn priorities() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dialplan/extensions_override_freepbx.conf"
    );
    let text = std::fs::read_to_string(path).expect("the shipped dialplan");
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("exten =>") || l.starts_with("same =>"))
        .map(str::to_owned)
        .collect()
}

fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no priority with {needle:?}"))
}

#[test]
fn the_source_comes_first_and_the_from_last() {
    let lines = priorities();
    let agi: Vec<&String> = lines.iter().filter(|l| l.contains("AGI(")).collect();
    assert_eq!(agi.len(), 2, "{agi:?}");
    assert!(
        agi[0].ends_with("AGI(${IPCOUNTRY_URL},${IPC_SRC},${IPC_FROM})"),
        "{}",
        agi[0]
    );
    // IAX2 has no From: exactly one argument.
    assert!(
        agi[1].ends_with("AGI(${IPCOUNTRY_URL},${IPC_SRC})"),
        "{}",
        agi[1]
    );
    for source in [
        "${CHANNEL(pjsip,remote_addr)}",
        "${CHANNEL(recvip)}",
        "${CHANNEL(peerip)}",
    ] {
        position(&lines, &format!("Set(IPC_SRC={source})"));
    }
}

#[test]
fn only_stranger_false_passes() {
    let lines = priorities();
    let cleared = position(&lines, "Set(STRANGER=)");
    let first_agi = position(&lines, "AGI(");
    assert!(cleared < first_agi, "STRANGER is cleared before the AGI");
    let verdict = position(&lines, "n(verdict)");
    assert!(
        lines[verdict].contains(r#"GotoIf($["${STRANGER}"="false"]?pass)"#),
        "{}",
        lines[verdict]
    );
    // Right after the test comes the stranger path, not a Return().
    assert!(
        lines[verdict + 1].contains("n(stranger)"),
        "{}",
        lines[verdict + 1]
    );
    let pass = position(&lines, "n(pass)");
    assert!(lines[pass].ends_with("Return()"));
    // Between the verdict and the end of the stranger path nothing returns.
    let hangup = position(&lines, "Hangup");
    assert!(lines[verdict..hangup]
        .iter()
        .all(|l| !l.contains("Return()")));
    // The only other way out is a server that could not be reached, as IPCOUNTRY_ON_FAILURE says.
    let status = position(&lines, "n(status)");
    assert!(lines[status].contains(r#"GotoIf($["${AGISTATUS}"="SUCCESS"]?verdict)"#));
}
