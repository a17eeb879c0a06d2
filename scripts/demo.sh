#!/usr/bin/env bash
# halo's main job, on a fresh Debian machine: builds halo and runs `halo demo`, a two-node
# cluster in network namespaces that shows both nodes alive, then one dead. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_need iproute2
rust_need
cargo build --release -q -p halo
exec ./target/release/halo demo
