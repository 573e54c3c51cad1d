//! `airlockd` (in progress).
fn main() {}
