//! The `ipcountry` binary.
fn main() {}
