#!/usr/bin/env bash
# halo's main job, on a fresh Debian machine: builds halo and runs `halo demo`, a three-node
# cluster in network namespaces: a virtual IP with halo's director (ldirectord) on n1, two
# web servers (n2, n3) behind it by LVS direct routing, a client fetching through the VIP.
# n1's cable is pulled, n2 takes over the VIP and the director, and the outage the client
# saw is printed; everything is cleaned up, on Ctrl-C too. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# iproute2: namespaces and addresses; nftables: the director's data plane; python3: the
# web servers.
apt_need iproute2 nftables python3
rust_need
cargo build --release -q -p halo
exec ./target/release/halo demo
