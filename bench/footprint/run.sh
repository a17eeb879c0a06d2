#!/usr/bin/env bash
# run.sh — idle footprint of real Heartbeat 3.0.6 and keepalived 2.2.7 nodes,
# each pair in two network namespaces joined by a veth, measured with
# measure.sh (RSS/PSS/USS + CPU over DURATION seconds, default 60).
#
#   bench/footprint/run.sh [all|pairs|hb|ka|solo]   (root; leaves nothing behind)
#
# Scenarios:
#   hb-1s      heartbeat keepalive 1     deadtime 5     realtime off
#   hb-100ms   heartbeat keepalive 100ms deadtime 500ms realtime off
#   hb-1s-rt   heartbeat keepalive 1     deadtime 5     realtime on (package default:
#              SCHED_RR + memreserve 6500 KiB touched in every process + mlockall).
#              cluster-glue's cl_make_realtime first tries to raise RLIMIT_MEMLOCK
#              to infinity; without CAP_SYS_RESOURCE (as in this VM) the 8 MiB
#              limit stays, and since memreserve >= limit/2 it logs "Cannot lock
#              ourselves into memory: System limits on locked-in memory are too
#              small." and skips mlockall. On a normal root host it would lock.
#   hb-1s-rt-mlock  same with `memreserve 2000` (< 4 MiB): mlockall() is called
#              and succeeds (CAP_IPC_LOCK ignores the limit) -> all mapped pages
#              resident and locked
#   ka-1s      keepalived VRRPv3 advert_int 1
#   ka-100ms   keepalived VRRPv3 advert_int 0.1
# Both nodes of each pair are measured at the same time (heartbeat nodes are
# symmetrical; keepalived: MASTER and BACKUP).
# *-solo: only node a runs (heartbeat: peer declared dead after initdead, keeps
# sending; keepalived: MASTER alone). Use these for PSS: when two identical
# daemons run on one machine they share the binary/library pages, which halves
# each one's PSS share of them.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
HB=$HERE/../../scripts/hb-node.sh
MEASURE=$HERE/measure.sh
WHAT=${1:-all}
export DURATION=${DURATION:-60}
SETTLE=${SETTLE:-5}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

NSA=hbt-$$-a NSB=hbt-$$-b VA=hbt$$a VB=hbt$$b
TMP=$(mktemp -d /tmp/footprint.XXXXXX)
KA_PIDS=()
SOLO=0

cleanup() {
    set +e
    for w in "$TMP"/hb-*/a "$TMP"/hb-*/b; do
        [ -f "$w/pid" ] || continue
        case $w in */a) ns=$NSA;; *) ns=$NSB;; esac
        HB_STOP_TIMEOUT=5 "$HB" stop "$ns" "$w" >/dev/null 2>&1
    done
    for p in "${KA_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${KA_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for ns in "$NSA" "$NSB"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NSA"; ip netns add "$NSB"
ip link add "$VA" netns "$NSA" type veth peer name "$VB" netns "$NSB"
ip -n "$NSA" addr add 10.254.99.1/24 dev "$VA"
ip -n "$NSB" addr add 10.254.99.2/24 dev "$VB"
for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
ip -n "$NSA" link set "$VA" up; ip -n "$NSB" link set "$VB" up

measure_pair() {  # LABEL PID_A PID_B
    local out=$TMP/measure
    LABEL="$1/a" "$MEASURE" "$2" > "$out.a" 2>&1 &
    local ma=$!
    LABEL="$1/b" "$MEASURE" "$3" > "$out.b" 2>&1 &
    local mb=$!
    wait "$ma" "$mb"
    echo "== $1 node a"; cat "$out.a"
    echo "== $1 node b"; cat "$out.b"
}

hb_scenario() {  # LABEL KEEPALIVE DEADTIME REALTIME [EXTRA-HA.CF-LINE]
    local d=$TMP/hb-$1 n w ns peer ifc
    for n in a b; do
        w=$d/$n; mkdir -p "$w/ha.d"
        if [ $n = a ]; then ifc=$VA peer=10.254.99.2; else ifc=$VB peer=10.254.99.1; fi
        cat > "$w/ha.d/ha.cf" <<EOF
logfile $w/ha-log
logfacility none
keepalive $2
deadtime $3
initdead 10
udpport 694
ucast $ifc $peer
auto_failback on
realtime $4
crm off
node a b
${5:-}
EOF
        printf 'auth 1\n1 sha1 footprint\n' > "$w/ha.d/authkeys"
        printf '%s\n' $n > "$w/ha.d/nodeinfo"
    done
    "$HB" start "$NSA" "$d/a" >/dev/null
    [ "$SOLO" = 1 ] || "$HB" start "$NSB" "$d/b" >/dev/null
    local i
    for ((i = 0; i < 300; i++)); do
        if [ "$SOLO" = 1 ]; then    # alone: active once initdead declared b dead
            [ "$("$HB" cl_status "$NSA" "$d/a" nodestatus a 2>/dev/null)" = active ] && break
        else
            [ "$("$HB" cl_status "$NSA" "$d/a" nodestatus b 2>/dev/null)" = active ] &&
            [ "$("$HB" cl_status "$NSB" "$d/b" nodestatus a 2>/dev/null)" = active ] && break
        fi
        sleep 0.1
    done
    [ $i -lt 300 ] || { echo "heartbeat did not become active" >&2; return 1; }
    sleep "$SETTLE"
    if [ "$SOLO" = 1 ]; then
        LABEL="$1/a" "$MEASURE" "$(cat "$d/a/pid")"
    else
        measure_pair "$1" "$(cat "$d/a/pid")" "$(cat "$d/b/pid")"
    fi
    grep -h -E 'is dead|Late heartbeat|ERROR|CRIT' "$d"/*/ha-log || true
    HB_STOP_TIMEOUT=10 "$HB" stop "$NSA" "$d/a" >/dev/null
    [ "$SOLO" = 1 ] || HB_STOP_TIMEOUT=10 "$HB" stop "$NSB" "$d/b" >/dev/null
}

ka_scenario() {  # LABEL ADVERT_INT
    local d=$TMP/ka-$1 n ns ifc prio state
    mkdir -p "$d"
    KA_PIDS=()
    local nodes="a b"; [ "$SOLO" = 1 ] && nodes=a
    for n in $nodes; do
        if [ $n = a ]; then ns=$NSA ifc=$VA prio=150 state=MASTER; else ns=$NSB ifc=$VB prio=100 state=BACKUP; fi
        cat > "$d/$n.conf" <<EOF
global_defs {
    router_id ka_$n
    vrrp_version 3
}
vrrp_instance VI_1 {
    state $state
    interface $ifc
    virtual_router_id 51
    priority $prio
    advert_int $2
    virtual_ipaddress {
        10.254.99.100/24
    }
}
EOF
        ip netns exec "$ns" keepalived -n -l -D -G -f "$d/$n.conf" \
            -p "$d/$n.pid" -r "$d/$n-vrrp.pid" -c "$d/$n-check.pid" -b "$d/$n-bfd.pid" \
            </dev/null >"$d/$n.log" 2>&1 &
        KA_PIDS+=($!)
    done
    local i
    for ((i = 0; i < 100; i++)); do
        ip -n "$NSA" -br addr show dev "$VA" | grep -q 10.254.99.100 && break
        sleep 0.1
    done
    [ $i -lt 100 ] || { echo "keepalived: no MASTER" >&2; cat "$d"/*.log >&2; return 1; }
    sleep "$SETTLE"
    if [ "$SOLO" = 1 ]; then
        LABEL="$1/a" "$MEASURE" "${KA_PIDS[0]}"
    else
        measure_pair "$1" "${KA_PIDS[0]}" "${KA_PIDS[1]}"
    fi
    grep -h -E 'Entering|state' "$d"/*.log | head -n 10 || true
    kill -TERM "${KA_PIDS[@]}"
    wait "${KA_PIDS[@]}" 2>/dev/null || true
    KA_PIDS=()
}

echo "# $(date -u +%FT%TZ) $(uname -r) nproc=$(nproc) CLK_TCK=$(getconf CLK_TCK) DURATION=${DURATION}s"
echo "# $(dpkg-query -W -f '${Package} ${Version}\n' heartbeat keepalived | tr '\n' ' ')"
case $WHAT in all|pairs|hb)
    SOLO=0
    hb_scenario hb-1s    1     5     off
    hb_scenario hb-100ms 100ms 500ms off
    hb_scenario hb-1s-rt 1     5     on
    hb_scenario hb-1s-rt-mlock 1 5   on  "memreserve 2000"
esac
case $WHAT in all|pairs|ka)
    SOLO=0
    ka_scenario ka-1s    1
    ka_scenario ka-100ms 0.1
esac
case $WHAT in all|solo)
    SOLO=1
    hb_scenario hb-1s-solo    1     5     off
    hb_scenario hb-100ms-solo 100ms 500ms off
    ka_scenario ka-1s-solo    1
    ka_scenario ka-100ms-solo 0.1
esac
