//! The `airlock` command (placeholder).
fn main() {}
