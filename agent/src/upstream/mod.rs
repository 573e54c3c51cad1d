//! upstream (in progress).
