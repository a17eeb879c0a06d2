#!/usr/bin/env bash
# The health checker of bench/director/run.sh, with the real servers' kernel work off the
# checker's CPU (root; needs 2 CPUs or more).
#
# On loopback the receive path of every packet (the real server's SYN handling, its
# accept-queue and socket creation, its wake-up, the reset it receives) runs in softirq inside
# the *sending* process's system call, so run.sh charges the real servers' kernel work to the
# checker. Against real servers on other machines that work runs on them, and the director's
# own receive path runs in the NIC's interrupt. This script gives the checker's CPU without
# it: the farm and the checker in a network namespace of their own whose loopback steers
# every received packet (RPS, rps_cpus) to CPU 1, the checker pinned to CPU 0, the farm to
# CPU 1. The checker's CPU is then its system calls, its transmit path and its runtime; the
# receive work shows as softirq time on CPU 1 (from /proc/stat, which also holds whatever
# else ran there: the machine is shared).
#
#   sudo bench/director/checks_split.sh        # ROUNDS=3 CHECK_SECS=20 KINDS="connect connect-floor"
#   CHECK_LOAD=/path/to/older/check_load LABEL=before ...   # the same measurement of another build
# One JSON line per run (checks/s, up ratio, the checker's CPU % of one core, RSS, checks in
# flight, and the softirq % of CPU 1 over the run), appended to bench/director/results-split.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
CHECK_SECS=${CHECK_SECS:-20}
KINDS=${KINDS:-connect connect-floor}
LABEL=${LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo build)}
OUT=bench/director/results-split.txt
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/main/target/bench}
if [[ $(nproc) -lt 2 ]]; then echo "needs 2 CPUs (checker on CPU 0, receive path on CPU 1)" >&2; exit 1; fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build -q --release -p halo-lb --example check_load --example check_farm
fi
BIN=$CARGO_TARGET_DIR/release/examples
LOAD=${CHECK_LOAD:-$BIN/check_load}
NS=hcsplit$$
farm=
cleanup() {
    [[ -n $farm ]] && kill "$farm" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
# `ip netns exec` mounts the namespace's own /sys: this is the namespace's loopback.
ip netns exec "$NS" sh -c 'echo 2 > /sys/class/net/lo/queues/rx-0/rps_cpus'
ulimit -n "$(ulimit -Hn)"
out=$(mktemp)
ip netns exec "$NS" taskset -c 1 "$BIN/check_farm" 20000 10000 >"$out" 2>&1 &
farm=$!
for _ in $(seq 50); do grep -qs listening "$out" && break; sleep 0.2; done
grep -qs listening "$out" || { cat "$out"; exit 1; }
rm -f "$out"
softirq1() { awk '$1 == "cpu1" { print $8 }' /proc/stat; }
hz=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    for kind in $KINDS; do
        s0=$(softirq1); t0=$(date +%s.%N)
        j=$(ip netns exec "$NS" taskset -c 0 "$LOAD" 20000 10000 "$kind" "$CHECK_SECS")
        s1=$(softirq1); t1=$(date +%s.%N)
        # Softirq on CPU 1 over the whole run (warm-up included), % of one core.
        si=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz / (t1 - t0) * 100 }')
        echo "split $LABEL round $round $(date -u +%FT%TZ) $kind ${j%\}},\"cpu1_softirq_pct\":$si}" | tee -a "$OUT"
    done
done
