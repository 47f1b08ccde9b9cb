//! The `latflow` command-line tool.
fn main() {}
