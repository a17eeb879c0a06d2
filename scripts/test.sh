#!/usr/bin/env bash
# Installs what the tests need (Debian packages, crates) and runs every test.
# Run as root: the end-to-end tests build network namespaces. With HALO_REQUIRE_ROOT=1
# (as CI sets it) a test that needs root fails instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# heartbeat: the real Heartbeat 3.0.6 peer of the interop tests; resource-agents: the real
# OCF agents (Dummy, IPaddr2) the agent and failover tests drive; iproute2: namespaces and
# `ss`; nftables: cutting links one way and the director's data plane; procps, util-linux:
# the helper scripts; python3: the hostile-packet sender and the test web servers; curl: the
# clients fetching through a VIP; chromium: the headless browser the dashboard test drives;
# systemd: systemd-analyze verifies packaging/halo.service; dpkg-dev: cargo-deb's
# dpkg-shlibdeps for the .deb's dependencies; openssh-server, openssh-client: the sshd per
# namespace and the ssh client that `halo config sync` and `halo exec` are tested through;
# qemu-system-x86, busybox-static, cpio, kmod, ipvsadm: the IPVS data plane's test boots a
# Debian kernel that has IPVS in a VM (scripts/ipvs-vm.sh) and checks it against ipvsadm.
apt_need heartbeat resource-agents iproute2 nftables procps util-linux python3 curl chromium systemd dpkg-dev openssh-server openssh-client qemu-system-x86 busybox-static cpio kmod ipvsadm
rust_need
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --workspace --all-targets
# The release build of the .deb (target/deb, a lock of its own), done before the tests so
# that the packaging test's own call of build-deb.sh finds it up to date. A failure here is
# reported by that test.
scripts/build-deb.sh >/dev/null || echo "== scripts/build-deb.sh failed; the .deb test will say why"
# One test at a time: the end-to-end tests time real daemons on a 2-core machine.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=1 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$rc"
