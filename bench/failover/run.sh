#!/usr/bin/env bash
# run.sh — client-observed failover outage: halo vs Heartbeat 3.0.6 vs keepalived 2.2.7, in
# the same run, on this machine, in network namespaces. See BENCHMARKS.md ("Failover").
#
#   sudo bench/failover/run.sh             the table (installs what it needs, builds halo)
#   sudo bench/failover/run.sh --soak      idle soaks instead: SOAK_S seconds (600) per load
#                                          in SOAK_LOADS ("cpu io": both cores busy, then heavy
#                                          disk I/O, by stress-ng; "none" also works), every
#                                          system at once, counting false failovers
#
# Each system gets its own testbed: namespaces n1, n2 and a client, each cabled (veth) to a
# bridge in a switch namespace. n1 and n2 run the cluster daemons and a tiny HTTP server
# answering its node name (server.py); the VIP starts on n1. All systems run at once, and
# their trials are interleaved round-robin so that machine noise hits them alike. A trial:
#   1. the client's ARP cache is flushed and the client is served by n1;
#   2. IDLE seconds of probing with no fault: a probe that fails or is answered by n2, and
#      any death/transition line in either daemon's log, is a false failover (or a flap);
#   3. probe.py pulls n1's cable at the switch (netlink, timestamped) and probes the VIP
#      every 5 ms until n2 answers: the outage is cut -> first answer by n2;
#   4. the cable is plugged back and the cluster settles back on n1 (auto_failback on)
#      before the next trial; a cluster that does not settle is restarted.
# halo's and keepalived's output is stamped with CLOCK_MONOTONIC as it is written
# (stamp.py), which splits the outage into detection (cut -> "node n1: is dead" /
# "Entering MASTER STATE" on n2) and takeover (that line -> first answer by n2).
#
# Environment: TRIALS (10) for the fast profiles, SLOW_TRIALS (5) for the 1 s/10 s ones,
# IDLE (5) seconds of idle probing per trial, SYSTEMS (all, in this order):
#   halo-fast keepalived-10ms heartbeat-fast heartbeat-20ms halo-seed keepalived-1s heartbeat-seed
# HB_FAST="50ms 200ms 100ms" (keepalive deadtime warntime for heartbeat-fast),
# CARGO_TARGET_DIR (target/bench), RESULTS (bench/failover/results.jsonl).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
TOP=$(cd "$HERE/../.." && pwd -P)
HB=$TOP/scripts/hb-node.sh
TRIALS=${TRIALS:-10}
SLOW_TRIALS=${SLOW_TRIALS:-5}
IDLE=${IDLE:-5}
SYSTEMS=${SYSTEMS:-"halo-fast keepalived-10ms heartbeat-fast heartbeat-20ms halo-seed keepalived-1s heartbeat-seed"}
HB_FAST=${HB_FAST:-"50ms 200ms 100ms"}
RESULTS=${RESULTS:-$HERE/results.jsonl}
SOAK=0
[ "${1:-}" = --soak ] && SOAK=1
SOAK_S=${SOAK_S:-600}

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

need=()
for p in heartbeat keepalived resource-agents iproute2 python3 curl; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ $SOAK = 1 ] && { command -v stress-ng >/dev/null || need+=(stress-ng); }
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TOP/target/bench}
(cd "$TOP" && cargo build --release -q -p halo)
HALO=$CARGO_TARGET_DIR/release/halo

TMP=$(mktemp -d /tmp/halo-failover.XXXXXX)
NS=()
PIDS=()
HBW=()
cleanup() {
    set +e
    exec 2>/dev/null  # no "Killed" job notices
    for w in "${HBW[@]}"; do HB_STOP_TIMEOUT=5 "$HB" stop "$(cat "$w/netns")" "$w" >/dev/null 2>&1; done
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.5
    for ns in "${NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- testbed -------------------------------------------------------------------------
ns() { echo "fo$$-$1-$2"; }             # SYS HOST
net() { echo "10.79.$1"; }              # K -> subnet prefix
vip() { echo "10.79.$1.100"; }

testbed() {  # SYS K: switch + n1 (p1) + n2 (p2) + c (p9), 10.79.K.0/24
    local s=$1 k=$2 sw h i
    sw=$(ns "$s" sw)
    ip netns add "$sw"; NS+=("$sw")
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 type bridge mcast_snooping 0
    ip -n "$sw" link set br0 up
    for h in n1:1 n2:2 c:9; do
        i=${h#*:} h=${h%:*}
        ip netns add "$(ns "$s" "$h")"; NS+=("$(ns "$s" "$h")")
        ip -n "$(ns "$s" "$h")" link set lo up
        ip link add eth0 netns "$(ns "$s" "$h")" type veth peer name "p$i" netns "$sw"
        ip -n "$sw" link set "p$i" master br0 up
        ip -n "$(ns "$s" "$h")" addr add "$(net "$k").$i/24" brd + dev eth0
        ip -n "$(ns "$s" "$h")" link set eth0 up
    done
    for h in n1 n2; do
        ip netns exec "$(ns "$s" "$h")" python3 "$HERE/server.py" "$h" >"$TMP/$s-$h-web.log" 2>&1 &
        PIDS+=($!)
    done
}

# ---- the systems ---------------------------------------------------------------------
# Each start_* starts both nodes of SYS; stop_* stops them. Logs: $TMP/SYS/nX/out (stamped)
profile() {  # SYS -> "kind keepalive deadtime warntime"
    case $1 in
        halo-fast)      echo "halo 10ms 30ms 20ms";;
        halo-seed)      echo "halo 1 10 5";;
        heartbeat-fast) echo "heartbeat $HB_FAST";;
        heartbeat-20ms) echo "heartbeat 20ms 100ms 60ms";;
        heartbeat-seed) echo "heartbeat 1 10 5";;
        keepalived-10ms) echo "keepalived 0.01";;
        keepalived-1s)  echo "keepalived 1";;
        *) echo "unknown system $1" >&2; exit 2;;
    esac
}

start_sys() {  # SYS K
    local s=$1 k=$2 kind ka dt wt h d
    read -r kind ka dt wt <<<"$(profile "$s")"
    for h in n1 n2; do
        d=$TMP/$s/$h; mkdir -p "$d/ha.d"
        case $kind in
        halo)
            printf 'keepalive %s\ndeadtime %s\nwarntime %s\ninitdead 10\nudpport 694\nbcast eth0\nauto_failback on\nnode n1 n2\nlogfile %s/log\n' \
                "$ka" "$dt" "$wt" "$d" > "$d/ha.d/ha.cf"
            printf 'auth 1\n1 sha1 failover-bench\n' > "$d/ha.d/authkeys"; chmod 600 "$d/ha.d/authkeys"
            echo "n1 IPaddr::$(vip "$k")/24/eth0" > "$d/ha.d/haresources"
            ip netns exec "$(ns "$s" "$h")" "$HALO" --socket "$d/sock" run --config-dir "$d/ha.d" --node "$h" \
                --state-dir "$d/state" </dev/null > >(python3 "$HERE/stamp.py" >>"$d/out") 2>&1 &
            echo $! > "$d/pid"; PIDS+=($!)
            ;;
        heartbeat)
            printf 'logfile %s/ha-log\nlogfacility none\nkeepalive %s\ndeadtime %s\nwarntime %s\ninitdead 10\nudpport 694\nbcast eth0\nauto_failback on\ncrm off\nnode n1 n2\n' \
                "$d" "$ka" "$dt" "$wt" > "$d/ha.d/ha.cf"
            printf 'auth 1\n1 sha1 failover-bench\n' > "$d/ha.d/authkeys"
            echo "n1 IPaddr::$(vip "$k")/24/eth0" > "$d/ha.d/haresources"
            printf '%s\n' "$h" > "$d/ha.d/nodeinfo"
            ns "$s" "$h" > "$d/netns"
            # the logfile is a FIFO read by stamp.py: Heartbeat's own stamps have 1 s resolution
            if [ ! -p "$d/ha-log" ]; then
                mkfifo "$d/ha-log"
                python3 "$HERE/stamp.py" "$d/ha-log" >>"$d/out" 2>&1 &
                PIDS+=($!)
            fi
            HBW+=("$d")
            "$HB" start "$(ns "$s" "$h")" "$d" >/dev/null
            ;;
        keepalived)
            local prio=100 state=BACKUP
            [ $h = n1 ] && prio=150 state=MASTER
            printf 'global_defs {\n  router_id %s\n  vrrp_version 3\n}\nvrrp_instance VI_1 {\n  state %s\n  interface eth0\n  virtual_router_id 51\n  priority %s\n  advert_int %s\n  virtual_ipaddress {\n    %s/24\n  }\n}\n' \
                "$h" $state $prio "$ka" "$(vip "$k")" > "$d/keepalived.conf"
            ip netns exec "$(ns "$s" "$h")" keepalived -n -l -D -G -P -f "$d/keepalived.conf" -p "$d/ka.pid" \
                -r "$d/vrrp.pid" -c "$d/check.pid" -b "$d/bfd.pid" </dev/null > >(python3 "$HERE/stamp.py" >>"$d/out") 2>&1 &
            echo $! > "$d/pid"; PIDS+=($!)
            ;;
        esac
    done
}

stop_sys() {  # SYS K — stops both nodes and removes a VIP left behind
    local s=$1 k=$2 h d p
    for h in n1 n2; do
        d=$TMP/$s/$h
        if [ -f "$d/netns" ]; then
            HB_STOP_TIMEOUT=10 "$HB" stop "$(cat "$d/netns")" "$d" >/dev/null 2>&1 || true
        elif [ -f "$d/pid" ]; then
            p=$(cat "$d/pid"); kill -TERM "$p" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$p" 2>/dev/null || true
        fi
        ip -n "$(ns "$s" "$h")" addr del "$(vip "$k")/24" dev eth0 2>/dev/null || true
        # keep the logs of the previous incarnation
        [ -f "$d/out" ] && { cat "$d/out" >> "$d/out.old"; : > "$d/out"; }
    done
}

has_vip() { ip -n "$(ns "$1" "$2")" -4 -br addr show dev eth0 | grep -q "$(vip "$3")/"; }
served_by() { ip netns exec "$(ns "$1" c)" curl -s --max-time 0.3 "http://$(vip "$2")/" 2>/dev/null; }

settled() {  # SYS K TIMEOUT_S: n1 serves, n2 holds no VIP, three checks in a row
    local s=$1 k=$2 ok=0 i
    for ((i = 0; i < $3 * 5; i++)); do
        if has_vip "$s" n1 "$k" && ! has_vip "$s" n2 "$k" && [ "$(served_by "$s" "$k")" = n1 ]; then
            ok=$((ok + 1)); [ $ok -ge 3 ] && { quiet "$s"; return 0; }
        else
            ok=0
            # the client may still point at n2's MAC after n2 let go of the address
            ((i % 10 == 9)) && ip -n "$(ns "$s" c)" neigh flush all
        fi
        sleep 0.2
    done
    return 1
}

quiet() {  # SYS: wait (up to 60 s) until neither node's log grew for QUIET (3) s: the
    # aftermath of a heal (Heartbeat restarts itself 2 s after "returning after partition")
    # must not land in the next trial's idle period
    local s=$1 a b i q=0
    a=$(cat "$TMP/$s"/n?/out | wc -c)
    for ((i = 0; i < 300 && q < ${QUIET:-3} * 5; i++)); do
        sleep 0.2
        b=$(cat "$TMP/$s"/n?/out | wc -c)
        if [ "$a" = "$b" ]; then q=$((q + 1)); else q=0; a=$b; fi
    done
}

events() {  # FILE -> count of lines meaning a death / state change, and of late heartbeats
    local t   # FILE may be a pipe (<(tail ...)): read it once
    t=$(cat "$1" 2>/dev/null || true)
    echo "$(grep -cE 'is dead|Entering (MASTER|BACKUP|FAULT) STATE' <<<"$t" || true) $(grep -c 'Late heartbeat' <<<"$t" || true)"
}

sys_k() { local i=0 s; for s in $SYSTEMS; do i=$((i + 1)); [ "$s" = "$1" ] && echo $i; done; return 0; }

trial() {  # SYS N
    local s=$1 n=$2 k d1 d2 l1 l2 ev1 ev2 late1 late2 idle cut tcut det="null" tko="null" kind slow
    k=$(sys_k "$s")
    read -r kind _ <<<"$(profile "$s")"
    if ! settled "$s" "$k" 60; then
        echo "# $s: did not settle on n1; restarting the cluster" >&2
        stop_sys "$s" "$k"; start_sys "$s" "$k"
        settled "$s" "$k" 90 || { echo "# $s: still not settled, trial $n skipped" >&2; return 0; }
        sleep 6   # peers advertise deadtime + 2 s for their first 5 s (Heartbeat does)
    fi
    ip -n "$(ns "$s" c)" neigh flush all
    d1=$TMP/$s/n1/out d2=$TMP/$s/n2/out
    read -r l1 _ < <(wc -l < "$d1"); read -r l2 _ < <(wc -l < "$d2")
    idle=$(ip netns exec "$(ns "$s" sw)" python3 "$HERE/probe.py" --client-ns "$(ns "$s" c)" --cut-port p1 \
        --vip "$(vip "$k")" --old n1 --idle "$IDLE" --no-cut)
    read -r ev1 late1 < <(events <(tail -n +"$((l1 + 1))" "$d1"))
    read -r ev2 late2 < <(events <(tail -n +"$((l2 + 1))" "$d2"))
    slow=30; [ "$s" = heartbeat-seed ] || [ "$s" = halo-seed ] && slow=40
    cut=$(ip netns exec "$(ns "$s" sw)" python3 "$HERE/probe.py" --client-ns "$(ns "$s" c)" --cut-port p1 \
        --vip "$(vip "$k")" --old n1 --idle 0.3 --timeout "$slow")
    tcut=$(sed -n 's/.*"t_cut": \([0-9.]*\).*/\1/p' <<<"$cut")
    # detection: the first line on n2 after the cut saying n1 is gone / n2 is master
    case $kind in
        halo|heartbeat) det=$(awk -v t="$tcut" '$1 >= t && /node n1: is dead/ { printf "%.1f", $1 - t; exit }' "$d2");;
        keepalived) det=$(awk -v t="$tcut" '$1 >= t && /Entering MASTER STATE/ { printf "%.1f", $1 - t; exit }' "$d2");;
    esac
    [ -n "$det" ] || det=null
    sleep 0.3
    ip -n "$(ns "$s" sw)" link set p1 up
    echo "{\"system\":\"$s\",\"trial\":$n,\"idle_events\":$((ev1 + ev2)),\"idle_late\":$((late1 + late2)),\"detect_ms\":$det,\"idle\":$idle,\"cut\":$cut}" | tee -a "$RESULTS"
}

soak() {  # LOAD: SOAK_S seconds idle with every system up, counting false failovers
    local load=$1 lp="" s k h before=() i=0
    case $load in
        cpu) stress-ng --cpu "$(nproc)" --timeout "${SOAK_S}s" >/dev/null 2>&1 & lp=$!;;
        io)  stress-ng --hdd 2 --hdd-bytes 1G --iomix 2 --temp-path "$TMP" --timeout "${SOAK_S}s" >/dev/null 2>&1 & lp=$!;;
    esac
    for s in $SYSTEMS; do for h in n1 n2; do before+=("$(wc -l < "$TMP/$s/$h/out")"); done; done
    local t0 t1
    t0=$(python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e6)')
    local probes=()
    for s in $SYSTEMS; do
        k=$(sys_k "$s")
        ip netns exec "$(ns "$s" sw)" python3 "$HERE/probe.py" --client-ns "$(ns "$s" c)" --cut-port p1 \
            --vip "$(vip "$k")" --old n1 --idle "$SOAK_S" --no-cut --interval 0.05 > "$TMP/soak-$load-$s.json" &
        probes+=($!)
    done
    wait "${probes[@]}"
    t1=$(python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e6)')
    [ -n "$lp" ] && { kill "$lp" 2>/dev/null || true; wait "$lp" 2>/dev/null || true; }
    for s in $SYSTEMS; do
        local ev=0 late=0 e l
        for h in n1 n2; do
            read -r e l < <(events <(tail -n +"$((before[i] + 1))" "$TMP/$s/$h/out")); i=$((i + 1))
            ev=$((ev + e)) late=$((late + l))
        done
        echo "{\"soak\":\"$load\",\"t0\":$t0,\"t1\":$t1,\"seconds\":$SOAK_S,\"system\":\"$s\",\"events\":$ev,\"late\":$late,\"probe\":$(cat "$TMP/soak-$load-$s.json")}" | tee -a "$RESULTS"
        settled "$s" "$(sys_k "$s")" 30 || echo "# $s did not settle after the $load soak" >&2
    done
}

# ---- main ------------------------------------------------------------------------------
{
    echo "# $(date -u +%FT%TZ) $(uname -r) nproc=$(nproc) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "# $(dpkg-query -W -f '${Package} ${Version}  ' heartbeat keepalived) halo $("$HALO" --version | cut -d' ' -f2) (release, tree $(git -C "$TOP" describe --always --dirty 2>/dev/null))"
    echo "# TRIALS=$TRIALS SLOW_TRIALS=$SLOW_TRIALS IDLE=${IDLE}s SYSTEMS=$SYSTEMS HB_FAST=$HB_FAST soak=$SOAK"
} | tee -a "$RESULTS"
for s in $SYSTEMS; do
    k=$(sys_k "$s")
    testbed "$s" "$k"
    start_sys "$s" "$k"
done
for s in $SYSTEMS; do
    settled "$s" "$(sys_k "$s")" 60 || { echo "$s did not come up on n1" >&2; exit 1; }
done
sleep 6   # peers advertise deadtime + 2 s for their first 5 s (Heartbeat does, so does halo)
if [ $SOAK = 1 ]; then
    for load in ${SOAK_LOADS:-cpu io}; do soak "$load"; done
    python3 "$HERE/summarize.py" --soak --logs="$TMP" "$RESULTS"
    exit 0
fi
for ((r = 1; r <= TRIALS; r++)); do
    for s in $SYSTEMS; do
        case $s in *-seed|*-1s) [ $r -le "$SLOW_TRIALS" ] || continue;; esac
        trial "$s" "$r"
    done
done
python3 "$HERE/summarize.py" --logs="$TMP" "$RESULTS"
