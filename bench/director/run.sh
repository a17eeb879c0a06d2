#!/usr/bin/env bash
# The director's data path and health checker, measured in one run (root; installs wrk,
# haproxy and nginx-light). Prints a table; raw output in bench/director/results.txt.
#
# Data path: namespaces c (client: wrk), d (director), r (real server: nginx, one worker,
# a 6-byte answer). HTTP requests/s of `wrk -t1 -c$CONNS -d${DURATION}s`:
#   direct      c -> r                      (c and r on one bridge)
#   halo DR     c -> VIP on d's bridge port, halo's nftables plane, `gate` (r: VIP on lo)
#   halo NAT    c -> VIP on d's own link to c, halo's nftables plane, `masq` (r's gateway: d)
#   HAProxy     c -> haproxy on d (mode http, one backend r), the userspace alternative
# Health checks: 10,000 real servers on 127.0.0.1 (ports 20000-29999, one tokio process),
# each checked every second (http, ldirectord's default negotiate check; then connect), paced
# as halo's director paces them: CPU % of one core, RSS and checks in flight of the checker;
# then the same connections from a plain blocking loop (KIND-floor), the kernel's share.
#
# PIN=1 (data path only, raw output in bench/director/results-pinned.txt): the director as on
# a machine of its own. Client (wrk) and real server (nginx) run on CPU 0 and every packet
# they receive is processed there (RPS on their interfaces and their switch ports); the
# director (halo, HAProxy) runs on CPU 1 and the packets it receives are processed there. CPU 0
# then does the same work on every path, and the director's work no longer comes off the
# client's and server's CPU, as it does not when the director is another machine.
#
# PIN=2 (raw output in bench/director/results-pinned-net.txt): as PIN=1, but the switch (the
# bridge's ports) is on CPU 1 with the director: the network is not the client's or the
# server's CPU. Every path then crosses CPUs the same number of times (the direct path too, as
# through a real switch, where PIN=1's direct path never leaves CPU 0), so CPU 0 does the same
# work, interrupts included, on every path and the difference is what the director costs.
# Each path's row also gives how busy each CPU was while wrk ran (/proc/stat).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
CHECK_SECS=${CHECK_SECS:-20}
PIN=${PIN:-0}
OUT=bench/director/results.txt
[[ $PIN == 1 ]] && OUT=bench/director/results-pinned.txt
[[ $PIN == 2 ]] && OUT=bench/director/results-pinned-net.txt
on() { # CPU NS COMMAND...: in namespace NS, pinned to CPU with PIN=1|2 (inherited by children)
    local cpu=$1 n=$2; shift 2
    if [[ $PIN != 0 ]]; then taskset -c "$cpu" ip netns exec "$P-$n" "$@"; else ip netns exec "$P-$n" "$@"; fi
}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/main/target/bench}
need=()
[[ ${CHECKS_ONLY:-0} == 1 ]] ||
for p in wrk haproxy nginx-light curl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; fi
systemctl stop nginx haproxy 2>/dev/null || true
# SKIP_BUILD=1 reuses the binaries of an earlier run (while the tree does not build).
# CHECKS_ONLY=1 runs the health-check part alone (builds only the two examples).
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    [[ ${CHECKS_ONLY:-0} == 1 ]] || cargo build -q --release -p halo --bin halo
    cargo build -q --release -p halo-lb --example check_load --example check_farm
fi
BIN=$CARGO_TARGET_DIR/release
TMP=$(mktemp -d)
P=hb$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in c d r sw; do
        for pid in $(ip netns pids $P-$ns 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del $P-$ns 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
checks() { # the health checker, with the kernel's floor beside it
    ulimit -n "$(ulimit -Hn)"  # 10,000 listeners in one process
    "$BIN/examples/check_farm" 20000 10000 >"$TMP/farm.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do grep -qs listening "$TMP/farm.out" && break; sleep 0.2; done
    HC=()
    for kind in http connect http-floor connect-floor; do
        j=$("$BIN/examples/check_load" 20000 10000 "$kind" "$CHECK_SECS")
        echo "checks $kind $j" | tee -a "$OUT"
        HC+=("$j")
    done
}
checks_table() {
    echo
    echo "Health checks of 10,000 real servers every second (one current_thread runtime; *-floor: the same"
    echo "connections from a blocking loop, the kernel's share)"
    printf '| check | checks/s | up | CPU %% of one core | RSS MiB (peak) | in flight (mean, peak) |\n|---|---|---|---|---|---|\n'
    for j in "${HC[@]}"; do
        python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print("| %s | %d | %.2f%% | %.1f | %.1f (%.1f) | %.1f, %d |" % (j["kind"], j["checks_per_s"], j["up_ratio"]*100, j["cpu_pct_one_core"], j["rss_mib"], j["hwm_mib"], j["in_flight_mean"], j["in_flight_peak"]))' "$j"
    done
}
if [[ ${CHECKS_ONLY:-0} == 1 ]]; then  # the health checker alone: no namespaces, no wrk
    # Keeps the data path's part of the last full run; replaces the checker's.
    sed -i -e '/^checks /d' -e '/^Health checks of/,$d' "$OUT" 2>/dev/null || true
    checks
    checks_table | tee -a "$OUT"
    exit 0
fi
fail() { echo "$*"; cat "$TMP/halo.out" "$TMP/halo.log" 2>/dev/null | tail -30; exit 1; }
ns() { local n=$1; shift; ip netns exec $P-$n "$@"; }
for n in c d r sw; do ip netns add $P-$n; ip -n $P-$n link set lo up; done
ip -n $P-sw link add br0 type bridge; ip -n $P-sw link set br0 up
for n in c d r; do
    ip link add eth0 netns $P-$n type veth peer name p-$n netns $P-sw
    ip -n $P-sw link set p-$n master br0 up
    ip -n $P-$n link set eth0 up
done
ip -n $P-c addr add 10.90.0.9/24 dev eth0
ip -n $P-d addr add 10.90.0.1/24 dev eth0
ip -n $P-r addr add 10.90.0.11/24 dev eth0
# The NAT path: the client's own link to the director, another subnet.
ip link add eth1 netns $P-d type veth peer name eth1 netns $P-c
ip -n $P-d addr add 10.90.1.1/24 dev eth1; ip -n $P-d link set eth1 up
ip -n $P-c addr add 10.90.1.9/24 dev eth1; ip -n $P-c link set eth1 up
ip -n $P-r route add 10.90.1.0/24 via 10.90.0.1
ns d sysctl -qw net.ipv4.ip_forward=1
# The routed controls: the real server by other addresses that c reaches through d, plainly
# forwarded (no halo rule matches them, and conntrack is off for them): routed-nat along the NAT
# path's links (c -eth1-> d -eth0-> r and back through d), routed-dr along the DR path's
# (c -> d on the switch -> r, answers straight back to c). What the same hops cost without a
# load balancer.
ip -n $P-r addr add 10.90.2.11/32 dev eth0
ip -n $P-r addr add 10.90.3.11/32 dev eth0
ip -n $P-d route add 10.90.2.11/32 via 10.90.0.11 dev eth0
ip -n $P-d route add 10.90.3.11/32 via 10.90.0.11 dev eth0
ip -n $P-c route add 10.90.2.11/32 via 10.90.1.1 dev eth1
ip -n $P-c route add 10.90.3.11/32 via 10.90.0.1 dev eth0
ns d sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
ns c sysctl -qw net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.eth0.accept_redirects=0
ns d nft -f - <<'NFT'
table ip bench_routed {
    chain raw { type filter hook prerouting priority raw; ip daddr { 10.90.2.11, 10.90.3.11 } notrack; ip saddr { 10.90.2.11, 10.90.3.11 } notrack; }
}
NFT
if [[ $PIN != 0 ]]; then # receive processing: client and server (PIN=1: and their switch ports) on CPU 0
    cpu0=(c:eth0 c:eth1 r:eth0) cpu1=(d:eth0 d:eth1 sw:p-d)
    if [[ $PIN == 1 ]]; then cpu0+=(sw:p-c sw:p-r); else cpu1+=(sw:p-c sw:p-r); fi
    for x in "${cpu0[@]}"; do
        ns "${x%%:*}" sh -c "echo 1 > /sys/class/net/${x#*:}/queues/rx-0/rps_cpus"
    done
    for x in "${cpu1[@]}"; do # the director's (PIN=2: and the switch's) on CPU 1
        ns "${x%%:*}" sh -c "echo 2 > /sys/class/net/${x#*:}/queues/rx-0/rps_cpus"
    done
fi
# r is also an LVS-DR real server for 10.90.0.100.
ns r sysctl -qw net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
ip -n $P-r addr add 10.90.0.100/32 dev lo

cat >"$TMP/nginx.conf" <<NGX
worker_processes 1;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 80 reuseport; location / { return 200 "hello\n"; } }
}
NGX
on 0 r nginx -c "$TMP/nginx.conf"
cat >"$TMP/haproxy.cfg" <<HAP
global
    maxconn 4000
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 10.90.1.1:8080
    default_backend b
backend b
    http-reuse always
    server r 10.90.0.11:80
HAP
on 1 d haproxy -D -f "$TMP/haproxy.cfg" -p "$TMP/haproxy.pid"

mkdir -p "$TMP/ha.d"
cat >"$TMP/ha.d/ha.cf" <<HA
keepalive 1
deadtime 3
initdead 3
realtime off
bcast eth0
node d
logfile $TMP/halo.log
HA
printf 'auth 1\n1 sha1 bench\n' >"$TMP/ha.d/authkeys"; chmod 600 "$TMP/ha.d/authkeys"
echo "d IPaddr2::10.90.0.100/24/eth0 IPaddr2::10.90.1.100/24/eth1 ldirectord::ldirectord.cf" >"$TMP/ha.d/haresources"
cat >"$TMP/ha.d/ldirectord.cf" <<LD
checktimeout=2
checkinterval=2

virtual=10.90.0.100:80
	real=10.90.0.11:80 gate
	checktype=connect
	scheduler=rr

virtual=10.90.1.100:80
	real=10.90.0.11:80 masq
	checktype=connect
	scheduler=rr
LD
on 1 d "$BIN/halo" --socket "$TMP/halo.sock" run --config-dir "$TMP/ha.d" --node d --state-dir "$TMP/state" >"$TMP/halo.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
    t=$("$BIN/halo" --socket "$TMP/halo.sock" lvs 2>/dev/null || true)
    [[ $(grep -c '10.90.0.11:80' <<<"$t") == 2 ]] && break
    sleep 0.5
done
"$BIN/halo" --socket "$TMP/halo.sock" lvs >"$TMP/lvs.txt" 2>&1 || fail "halo lvs"; cat "$TMP/lvs.txt"
[[ $(grep -c '10.90.0.11:80' "$TMP/lvs.txt") == 2 ]] || fail "the director did not come up"

cpus() { grep -E '^cpu[01] ' /proc/stat; }
busy() { # two samples of cpus -> "B0 B1": each CPU's busy % between them (idle and iowait excluded)
    paste <(echo "$1") <(echo "$2") |
        awk '{ t = 0; i = 0; for (k = 2; k <= 11; k++) { d = $(k + 11) - $k; t += d; if (k == 5 || k == 6) i += d }
               printf "%s%.0f", (NR > 1 ? " " : ""), 100 * (t - i) / t }'
}
rps() { # URL -> "requests/s busy0 busy1"
    local a b v
    a=$(cpus)
    v=$(on 0 c wrk -t1 -c"$CONNS" -d"${DURATION}s" "$1" | awk '/^Requests\/sec:/ { print int($2) }')
    b=$(cpus)
    echo "$v $(busy "$a" "$b")"
}
declare -A R B
: >"$OUT"
for round in $(seq "$ROUNDS"); do
    for path in direct:http://10.90.0.11/ routed-dr:http://10.90.3.11/ dr:http://10.90.0.100/ \
        routed-nat:http://10.90.2.11/ nat:http://10.90.1.100/ haproxy:http://10.90.1.1:8080/; do
        name=${path%%:*}; url=${path#*:}
        ns c curl -sf --max-time 2 "$url" >/dev/null || { echo "$name: $url does not answer"; exit 1; }
        read -r v b0 b1 < <(rps "$url")
        echo "round $round $name $v cpu0 $b0% cpu1 $b1%" | tee -a "$OUT"
        R[$name]="${R[$name]:-} $v"
        B[$name]="${B[$name]:-} $b0/$b1"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
d=$(median "${R[direct]}")
[[ $PIN != 0 ]] || checks

pinned=""
[[ $PIN == 1 ]] && pinned="; PIN=1: client and server on CPU 0, director on CPU 1"
[[ $PIN == 2 ]] && pinned="; PIN=2: client and server on CPU 0, director and switch on CPU 1"
echo
echo "HTTP requests/s (wrk -t1 -c$CONNS, ${DURATION}s, median of $ROUNDS; nginx, one worker)$pinned"
vs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }'; }
printf '| path | requests/s | vs direct | vs the same hops routed | rounds | CPU 0 / CPU 1 busy %% by round |\n|---|---|---|---|---|---|\n'
for name in direct routed-dr dr routed-nat nat haproxy; do
    m=$(median "${R[$name]}")
    case $name in dr | nat) rt=$(vs "$m" "$(median "${R[routed-$name]}")") ;; *) rt="" ;; esac
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$m" "$(vs "$m" "$d")" "$rt" "${R[$name]# }" "${B[$name]# }"
done
[[ $PIN != 0 ]] || checks_table
