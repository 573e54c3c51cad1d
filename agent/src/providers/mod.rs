//! providers (in progress).
