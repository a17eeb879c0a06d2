#!/usr/bin/env bash
# halo's main job, on a fresh Debian machine: builds halo and runs `halo demo`, a two-node
# cluster in network namespaces sharing a virtual IP and a web server: the active node's
# cable is pulled, the other takes over, and the outage a client saw is printed. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_need iproute2 python3
rust_need
cargo build --release -q -p halo
exec ./target/release/halo demo
