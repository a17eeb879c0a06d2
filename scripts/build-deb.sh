#!/usr/bin/env bash
# Builds target/deb/debian/halo_VERSION_ARCH.deb: the release binary, the systemd unit,
# the manual pages and shell completions generated from the CLI, the compatibility
# symlinks in /usr/lib/halo/bin. The release build has a target directory of its own
# (target/deb, or $HALO_DEB_TARGET_DIR) so it never waits on the dev build's lock, and is
# reused when up to date.
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rust_need
# Run from a test, forget what cargo set for it (CARGO_PKG_NAME...): build scripts such as
# ring's watch those, and the release build done by scripts/test.sh would be redone.
for v in $(compgen -e); do
    case "$v" in CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_CRATE_* | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR | CARGO_TARGET_DIR) unset "$v" ;; esac
done
# Not $CARGO_TARGET_DIR: a test run under `cargo test` inherits the dev build's.
export CARGO_TARGET_DIR="${HALO_DEB_TARGET_DIR:-$PWD/target/deb}"
if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb" >&2
    cargo install cargo-deb --locked >&2
fi
# cargo-deb's `depends = "$auto"` asks dpkg-shlibdeps (dpkg-dev).
command -v dpkg-shlibdeps >/dev/null 2>&1 || apt_need dpkg-dev >&2
cargo build --release -p halo --bin halo >&2
doc="$CARGO_TARGET_DIR/release/halo-doc"
rm -rf "$doc"
mkdir -p "$doc/man" "$doc/completions"
halo="$CARGO_TARGET_DIR/release/halo"
"$halo" man --out "$doc/man" >&2
# Debian policy: manual pages compressed (cargo-deb only compresses those not under target/).
gzip -9n "$doc"/man/*.8
"$halo" completions bash >"$doc/completions/halo.bash"
"$halo" completions zsh >"$doc/completions/_halo"
"$halo" completions fish >"$doc/completions/halo.fish"
cargo deb -p halo --no-build --no-strip --output "$CARGO_TARGET_DIR/debian/" >&2
ls -t "$CARGO_TARGET_DIR"/debian/halo_*.deb | head -1
