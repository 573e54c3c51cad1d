//! Wiring (in progress).
