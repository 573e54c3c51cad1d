//! Non-unix fallbacks for [`super`]: Windows has no per-process open-files limit of this kind.

pub(super) fn raise_open_files_limit() -> Option<u64> {
    None
}
