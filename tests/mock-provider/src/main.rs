//! Mock provider (placeholder; built out by the mock-provider work).
fn main() {}
