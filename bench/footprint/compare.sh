#!/usr/bin/env bash
# compare.sh — halo vs Heartbeat 3.0.6 vs keepalived 2.2.7, idle, in the SAME run (plus a
# halo pair with `realtime off`, since real-time scheduling has a CPU price of its own):
# for each heartbeat interval (1 s, then 100 ms) one pair of each daemon runs at the same
# time, each pair in its own two network namespaces joined by a veth, every daemon with its
# packaged defaults (heartbeat and halo: realtime on). Both nodes of every pair are
# measured over the same DURATION-second window with measure.sh (all processes of a node:
# RSS, PSS, CPU). Prints a summary table per interval.
#
#   sudo bench/footprint/compare.sh            (builds halo --release first)
# Needs: heartbeat, keepalived (apt-get install heartbeat keepalived), iproute2.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
TOP=$(cd "$HERE/../.." && pwd -P)
HB=$TOP/scripts/hb-node.sh
MEASURE=$HERE/measure.sh
export DURATION=${DURATION:-60}
SETTLE=${SETTLE:-5}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for p in heartbeat keepalived; do
    dpkg -s $p >/dev/null 2>&1 || { echo "needs the Debian package $p" >&2; exit 1; }
done
(cd "$TOP" && cargo build --release -q -p halo)
HALO=$TOP/target/release/halo

TMP=$(mktemp -d /tmp/halo-compare.XXXXXX)
NS=()
PIDS=()
cleanup() {
    set +e
    for w in "$TMP"/hb/a "$TMP"/hb/b; do
        [ -f "$w/pid" ] && HB_STOP_TIMEOUT=5 "$HB" stop "$(cat "$w/netns")" "$w" >/dev/null 2>&1
    done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for ns in "${NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pair() {  # NAME SUBNET -> namespaces cmp-$$-NAME-a/b, veth v-NAME-a/b, 10.254.SUBNET.1/.2
    local a=cmp$$-$1-a b=cmp$$-$1-b
    ip netns add "$a"; ip netns add "$b"; NS+=("$a" "$b")
    ip link add "v$1a" netns "$a" type veth peer name "v$1b" netns "$b"
    ip -n "$a" addr add "10.254.$2.1/24" brd + dev "v$1a"
    ip -n "$b" addr add "10.254.$2.2/24" brd + dev "v$1b"
    for n in "$a" "$b"; do ip -n "$n" link set lo up; done
    ip -n "$a" link set "v$1a" up; ip -n "$b" link set "v$1b" up
}

start_halo() {  # NAME SUBNET REALTIME KEEPALIVE DEADTIME
    local n peer ifc d
    for n in a b; do
        if [ $n = a ]; then ifc=v$1a peer=10.254.$2.2; else ifc=v$1b peer=10.254.$2.1; fi
        d=$TMP/$1/$n; mkdir -p "$d/ha.d"
        printf 'logfile %s/log\nkeepalive %s\ndeadtime %s\ninitdead 10\nudpport 694\nucast %s %s\nauto_failback on\nrealtime %s\nnode a b\n' \
            "$d" "$4" "$5" "$ifc" "$peer" "$3" > "$d/ha.d/ha.cf"
        printf 'auth 1\n1 sha1 footprint\n' > "$d/ha.d/authkeys"; chmod 600 "$d/ha.d/authkeys"
        ip netns exec "cmp$$-$1-$n" "$HALO" --socket "$d/sock" run --config-dir "$d/ha.d" --node $n \
            --state-dir "$d/state" </dev/null >"$d/out" 2>&1 &
        PIDS+=($!); echo $! > "$d/pid"
    done
}

start_hb() {  # KEEPALIVE DEADTIME
    local n peer ifc w
    for n in a b; do
        if [ $n = a ]; then ifc=vhba peer=10.254.72.2; else ifc=vhbb peer=10.254.72.1; fi
        w=$TMP/hb/$n; mkdir -p "$w/ha.d"
        printf 'logfile %s/ha-log\nlogfacility none\nkeepalive %s\ndeadtime %s\ninitdead 10\nudpport 694\nucast %s %s\nauto_failback on\ncrm off\nnode a b\n' \
            "$w" "$1" "$2" "$ifc" "$peer" > "$w/ha.d/ha.cf"
        printf 'auth 1\n1 sha1 footprint\n' > "$w/ha.d/authkeys"
        printf '%s\n' $n > "$w/ha.d/nodeinfo"
        echo "cmp$$-hb-$n" > "$w/netns"
        "$HB" start "cmp$$-hb-$n" "$w" >/dev/null
    done
}

start_ka() {  # ADVERT_INT
    local n ifc prio state d=$TMP/ka
    mkdir -p "$d"
    for n in a b; do
        if [ $n = a ]; then ifc=vkaa prio=150 state=MASTER; else ifc=vkab prio=100 state=BACKUP; fi
        printf 'global_defs {\n  router_id ka_%s\n  vrrp_version 3\n}\nvrrp_instance VI_1 {\n  state %s\n  interface %s\n  virtual_router_id 51\n  priority %s\n  advert_int %s\n  virtual_ipaddress {\n    10.254.73.100/24\n  }\n}\n' \
            $n $state $ifc $prio "$1" > "$d/$n.conf"
        ip netns exec "cmp$$-ka-$n" keepalived -n -l -D -G -f "$d/$n.conf" -p "$d/$n.pid" -r "$d/$n-vrrp.pid" \
            -c "$d/$n-check.pid" -b "$d/$n-bfd.pid" </dev/null >"$d/$n.log" 2>&1 &
        PIDS+=($!); echo $! > "$d/$n.rootpid"
    done
}

wait_up() {
    local i
    for ((i = 0; i < 300; i++)); do
        if "$HALO" --socket "$TMP/halo/a/sock" status --json 2>/dev/null | grep -q '"state": "active"' &&
           "$HALO" --socket "$TMP/halonrt/a/sock" status --json 2>/dev/null | grep -q '"state": "active"' &&
           [ "$("$HB" cl_status "cmp$$-hb-a" "$TMP/hb/a" nodestatus b 2>/dev/null)" = active ] &&
           ip -n "cmp$$-ka-a" -br addr show dev vkaa | grep -q 10.254.73.100; then
            return 0
        fi
        sleep 0.1
    done
    echo "not every daemon came up" >&2; return 1
}

stop_all() {
    for n in a b; do HB_STOP_TIMEOUT=10 "$HB" stop "cmp$$-hb-$n" "$TMP/hb/$n" >/dev/null 2>&1 || true; done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait "${PIDS[@]}" 2>/dev/null || true
    PIDS=()
    rm -rf "$TMP/halo" "$TMP/halonrt" "$TMP/hb" "$TMP/ka"
}

pair halo 71; pair hb 72; pair ka 73; pair halonrt 74
echo "# $(date -u +%FT%TZ) $(uname -r) nproc=$(nproc) DURATION=${DURATION}s; $(dpkg-query -W -f '${Package} ${Version}  ' heartbeat keepalived); halo $("$HALO" --version | cut -d' ' -f2)"
for interval in "1 10 1" "100ms 1 0.1"; do
    set -- $interval
    start_halo halo 71 on "$1" "$2"; start_halo halonrt 74 off "$1" "$2"; start_hb "$1" "$2"; start_ka "$3"
    wait_up
    sleep "$SETTLE"
    MPIDS=()
    for d in halo halonrt hb ka; do
        for n in a b; do
            case $d in
                halo|halonrt) pid=$(cat "$TMP/$d/$n/pid");;
                hb) pid=$(cat "$TMP/hb/$n/pid");;
                ka) pid=$(cat "$TMP/ka/$n.rootpid");;
            esac
            LABEL="$d/$n" "$MEASURE" "$pid" > "$TMP/m-$d-$n" 2>&1 &
            MPIDS+=($!)
        done
    done
    wait "${MPIDS[@]}"
    echo
    echo "## keepalive/advert $1 (same ${DURATION}s window for all eight daemons)"
    printf '%-22s %6s %10s %10s %14s\n' daemon procs RSS_kB PSS_kB CPU_s_per_min
    for d in halo halonrt hb ka; do
        name=$d; [ $d = halonrt ] && name="halo, realtime off"; [ $d = hb ] && name="heartbeat 3.0.6"; [ $d = ka ] && name="keepalived 2.2.7"
        for n in a b; do
            t=$(grep '^TOTAL' "$TMP/m-$d-$n")
            get() { echo "$t" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
            cpu=$(awk -v s="$(get sched_cpu_s)" -v c="$(get cpu_s)" -v w="$(get window_s)" 'BEGIN { printf "%.4f", 60 * (s >= 0 ? s : c) / w }')
            printf '%-22s %6s %10s %10s %14s\n' "$name ($n)" "$(get procs)" "$(get rss_kB)" "$(get pss_kB)" "$cpu"
        done
    done
    stop_all
done
