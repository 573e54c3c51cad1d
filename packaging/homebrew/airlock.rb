# typed: false
# frozen_string_literal: true

# Homebrew formula for Airlock: the `airlock` CLI and the `airlockd` agent, built from source, with
# the agent as a per-user `brew services` job. brew is unprivileged, so this is the one-user install:
# the fleet install (a LaunchDaemon as `_airlock`, machine-wide trust, MDM) is the macOS pkg
# (packaging/macos). Copy this file into a tap (`Formula/airlock.rb`) and set url and sha256 there.
class Airlock < Formula
  desc "Endpoint AI governance agent: local proxy applying signed policy to AI API calls"
  homepage "https://github.com/airlock-ai/airlock"
  # PLACEHOLDER: set at release time to the release's source tarball and its SHA-256
  # (`shasum -a 256 airlock-X.Y.Z.tar.gz`). The zeros below are not a real checksum.
  url "https://github.com/airlock-ai/airlock/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "Apache-2.0"
  head "https://github.com/airlock-ai/airlock.git", branch: "main"

  depends_on "rust" => :build

  def install
    # Both crates of the workspace, each with Homebrew's cargo flags (--locked, --root, --path).
    system "cargo", "install", *std_cargo_args(path: "cli")
    system "cargo", "install", *std_cargo_args(path: "agent")
    # bash, zsh and fish completions from `airlock completions SHELL`.
    generate_completions_from_executable(bin/"airlock", "completions")
    # The man page from `airlock man` (roff on standard output).
    (man1/"airlock.1").write Utils.safe_popen_read(bin/"airlock", "man")
  end

  def caveats
    <<~EOS
      `brew services start airlock` runs airlockd as you, on 127.0.0.1:8479, with its state in
      ~/.local/state/airlock. To trust its CA and point your shells at it:
        airlock setup --user
      A Mac managed by an MDM uses the Airlock pkg instead; if the MDM has put an enrollment in
      "/Library/Application Support/Airlock/Config", this agent follows that one, not yours.
    EOS
  end

  # No --state-dir and no --config-dir: the defaults are where `airlock` looks for the agent, and an
  # explicit --config-dir would turn off the managed enrollment's precedence over the user's own.
  service do
    run [opt_bin/"airlockd"]
    keep_alive true
    process_type :background
    log_path var/"log/airlock/airlockd.log"
    error_log_path var/"log/airlock/airlockd.log"
  end

  test do
    assert_match "is valid", shell_output("#{bin}/airlockd --check")
    assert_match version.to_s, shell_output("#{bin}/airlock --version")
  end
end
