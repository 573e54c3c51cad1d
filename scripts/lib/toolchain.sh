# Sourced by scripts/test.sh and scripts/start.sh (from the repository root).

# The toolchain rust-toolchain.toml pins, without downloading one: rustup would try to download a missing
# pinned toolchain (CI's machines cannot reach its server), and `rustup toolchain link` refuses official
# names such as 1.95.0. So when the pinned name is missing and an installed toolchain (a fresh machine's
# `stable`) is exactly that version with clippy and rustfmt, it gets the pinned name the way `rustup
# toolchain link` names a toolchain: a symlink in rustup's toolchains directory. Anything else stops here
# with what to install.
ensure_toolchain() {
  local want home dir out release host installed=""
  want=$(sed -n 's/^channel *= *"\([^"]*\)".*/\1/p' rust-toolchain.toml)
  export RUSTUP_AUTO_INSTALL=0
  if command -v rustup >/dev/null 2>&1; then
    home=$(cd / && rustup show home)
    for dir in "$home"/toolchains/*/; do
      out=$("$dir/bin/rustc" -vV 2>/dev/null) || continue
      release=$(sed -n 's/^release: //p' <<<"$out")
      host=$(sed -n 's/^host: //p' <<<"$out")
      installed+=" $(basename "$dir") (rustc $release)"
      if [ "$release" = "$want" ] && [ ! -e "$home/toolchains/$want-$host" ] \
        && [ -x "$dir/bin/cargo-clippy" ] && [ -x "$dir/bin/rustfmt" ]; then
        ln -s "$(basename "$dir")" "$home/toolchains/$want-$host" 2>/dev/null \
          && echo "named the installed toolchain $(basename "$dir") (rustc $release) $want-$host"
      fi
    done
  fi
  if [[ "$(rustc -V 2>/dev/null)" != "rustc $want "* ]] || ! cargo clippy -V >/dev/null 2>&1 \
    || ! cargo fmt --version >/dev/null 2>&1; then
    echo "error: rust-toolchain.toml pins Rust $want with clippy and rustfmt; installed:${installed:- $(rustc -V 2>&1)}" >&2
    echo "  install it: rustup toolchain install $want --profile minimal --component clippy,rustfmt" >&2
    echo "  (a $want toolchain without them: rustup component add clippy rustfmt --toolchain NAME)" >&2
    exit 1
  fi
  rustc -V
}
