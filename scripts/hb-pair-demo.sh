#!/usr/bin/env bash
# hb-pair-demo.sh — two real Heartbeat 3.0.6 nodes ("a", "b") in two network
# namespaces joined by a veth pair, driven through scripts/hb-node.sh:
#   start both -> wait until each sees the other `active` -> cut the link ->
#   wait until each declares the other `dead` -> restore -> `active` again ->
#   stop both -> clean up (namespaces, processes, temp dir).
#
# Environment knobs (defaults in brackets):
#   KEEPALIVE [1]  DEADTIME [5]  WARNTIME [2]  INITDEAD [10]   ha.cf time values
#                  (seconds, or with attached unit: 200ms)
#   CUT       [nft]   how to cut the link: nft (drop incoming UDP 694 in both namespaces;
#                     link stays up, sends still succeed) or link (ip link set down)
#   SETTLE    [5]     seconds to wait after `active` before cutting (heartbeat
#                     advertises dt = deadtime + 2 s during its first seconds,
#                     so an early cut is detected ~2 s late)
#   KEEP      [0]     1 = keep the temp dir (configs + logs) and print its path
#   HB_DEBUG  [0]     1 = run heartbeat with -d
# Exit status 0 iff every step succeeded.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
HB=$HERE/hb-node.sh
KEEPALIVE=${KEEPALIVE:-1} DEADTIME=${DEADTIME:-5} WARNTIME=${WARNTIME:-2} INITDEAD=${INITDEAD:-10}
CUT=${CUT:-nft} KEEP=${KEEP:-0} SETTLE=${SETTLE:-5}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

NSA=hbt-$$-a NSB=hbt-$$-b
VA=hbt$$a VB=hbt$$b                       # veth names (<= 15 chars)
IPA=10.254.99.1 IPB=10.254.99.2
TMP=$(mktemp -d /tmp/hb-pair-demo.XXXXXX)
WA=$TMP/a WB=$TMP/b
HB_STOP_TIMEOUT=${HB_STOP_TIMEOUT:-20}; export HB_STOP_TIMEOUT
[ "${HB_DEBUG:-0}" = 1 ] && export HB_ARGS=-d

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
log() { printf '[%6ss] %s\n' "$(since "$T0")" "$*"; }
T0=$(now)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for n in "$WA:$NSA" "$WB:$NSB"; do
        [ -d "${n%%:*}" ] && [ -e "/run/netns/${n##*:}" ] &&
            HB_STOP_TIMEOUT=5 "$HB" stop "${n##*:}" "${n%%:*}" >/dev/null 2>&1
    done
    for ns in "$NSA" "$NSB"; do
        [ -e "/run/netns/$ns" ] || continue
        pids=$(ip netns pids "$ns" 2>/dev/null)     # stragglers (ours: we created the netns)
        # shellcheck disable=SC2086
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    [ $rc = 0 ] && echo "RESULT: PASS" || echo "RESULT: FAIL (rc=$rc)"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; show_logs; exit 1; }
show_logs() {
    for w in "$WA" "$WB"; do
        echo "---- ${w##*/}: $w/ha-log (last 30) ----"
        tail -n 30 "$w/ha-log" 2>/dev/null
    done
}

# ---- network ----------------------------------------------------------
ip netns add "$NSA"
ip netns add "$NSB"
ip link add "$VA" netns "$NSA" type veth peer name "$VB" netns "$NSB"
ip -n "$NSA" addr add $IPA/24 dev "$VA"
ip -n "$NSB" addr add $IPB/24 dev "$VB"
for ns in "$NSA" "$NSB"; do ip -n "$ns" link set lo up; done
ip -n "$NSA" link set "$VA" up
ip -n "$NSB" link set "$VB" up

# ---- configuration ----------------------------------------------------
KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkconf() {  # WORKDIR NODENAME IFACE PEER-IP
    mkdir -p "$1/ha.d"
    cat > "$1/ha.d/ha.cf" <<EOF
logfile $1/ha-log
debugfile $1/ha-debug
logfacility none
keepalive $KEEPALIVE
deadtime $DEADTIME
warntime $WARNTIME
initdead $INITDEAD
udpport 694
ucast $3 $4
auto_failback on
realtime off
crm off
node a
node b
EOF
    printf 'auth 1\n1 sha1 %s\n' "$KEY" > "$1/ha.d/authkeys"
    chmod 600 "$1/ha.d/authkeys"
    printf '%s\n' "$2" > "$1/ha.d/nodeinfo"
}
mkconf "$WA" a "$VA" $IPB
mkconf "$WB" b "$VB" $IPA

# wait_both WANT TIMEOUT: poll `cl_status nodestatus` on both nodes (a about
# b, b about a) every 50 ms until both report WANT; sets TA/TB to the seconds
# each took. Returns 1 on timeout.
wait_both() {
    local want=$1 t=$2 s st
    s=$(now); TA="" TB=""
    while [ -z "$TA" ] || [ -z "$TB" ]; do
        if [ -z "$TA" ]; then
            st=$("$HB" cl_status "$NSA" "$WA" nodestatus b 2>/dev/null) || true
            [ "$st" = "$want" ] && TA=$(since "$s")
        fi
        if [ -z "$TB" ]; then
            st=$("$HB" cl_status "$NSB" "$WB" nodestatus a 2>/dev/null) || true
            [ "$st" = "$want" ] && TB=$(since "$s")
        fi
        if awk -v a="$s" -v b="$(now)" -v t="$t" 'BEGIN { exit !(b - a > t) }'; then
            echo "timeout waiting for '$want': a->b ${TA:-no} b->a ${TB:-no}" >&2
            return 1
        fi
        sleep 0.05
    done
}

# ---- start ------------------------------------------------------------
log "starting node a in $NSA and node b in $NSB (keepalive $KEEPALIVE deadtime $DEADTIME warntime $WARNTIME initdead $INITDEAD)"
TS=$(now)
"$HB" start "$NSA" "$WA"
TSB=$(now)
"$HB" start "$NSB" "$WB"
log "both started ($(since "$TS")s); waiting for membership"
wait_both active 60 || fail "no membership"
log "membership: both see each other active $(since "$TS")s after the start of a, $(since "$TSB")s after the start of b (hb-node.sh start returns ~0.5 s after the node is up)"
echo "  a: cl_status nodestatus b = $("$HB" cl_status "$NSA" "$WA" nodestatus b)"
echo "  b: cl_status nodestatus a = $("$HB" cl_status "$NSB" "$WB" nodestatus a)"
echo "  a: cl_status nodestatus a = $("$HB" cl_status "$NSA" "$WA" nodestatus a)"
echo "  a: cl_status hbstatus     = $("$HB" cl_status "$NSA" "$WA" hbstatus)"
echo "  a: cl_status listnodes    = $("$HB" cl_status "$NSA" "$WA" listnodes | tr '\n' ' ')"
echo "  a: cl_status hblinkstatus b $VA = $("$HB" cl_status "$NSA" "$WA" hblinkstatus b "$VA")"
echo "  a: cl_status hbparameter -p deadtime = $("$HB" cl_status "$NSA" "$WA" hbparameter -p deadtime)"
echo "  a: processes: $("$HB" status "$NSA" "$WA")"
echo "  host /run/heartbeat.pid exists? $([ -e /run/heartbeat.pid ] && echo yes || echo no);" \
     "node a's /run/heartbeat.pid (inside its mount ns): $("$HB" exec "$NSA" "$WA" cat /run/heartbeat.pid 2>/dev/null)"

# ---- cut --------------------------------------------------------------
cut_link() {
    if [ "$CUT" = link ]; then
        ip -n "$NSA" link set "$VA" down
    else
        for ns in "$NSA" "$NSB"; do
            ip netns exec "$ns" nft -f - <<'EOF'
table inet hbt_cut {
    chain in  { type filter hook input  priority 0; udp dport 694 drop; }
}
EOF
        done
    fi
}
restore_link() {
    if [ "$CUT" = link ]; then
        ip -n "$NSA" link set "$VA" up
    else
        for ns in "$NSA" "$NSB"; do ip netns exec "$ns" nft delete table inet hbt_cut; done
    fi
}

sleep "$SETTLE"
log "cutting the link ($CUT)"
cut_link
wait_both dead 120 || fail "partition not detected"
log "after the cut: a declared b dead after ${TA}s, b declared a dead after ${TB}s"
grep -q 'node b: is dead' "$WA/ha-log" || fail "no 'node b: is dead' in a's log"
grep -q 'node a: is dead' "$WB/ha-log" || fail "no 'node a: is dead' in b's log"
echo "  a: $(grep 'node b: is dead' "$WA/ha-log" | tail -n1)"
echo "  b: $(grep 'node a: is dead' "$WB/ha-log" | tail -n1)"
st=$("$HB" cl_status "$NSA" "$WA" nodestatus b) && rc=0 || rc=$?
echo "  a: cl_status nodestatus b = $st (rc=$rc)"
echo "  a: cl_status hblinkstatus b $VA = $("$HB" cl_status "$NSA" "$WA" hblinkstatus b "$VA")"

# ---- restore ----------------------------------------------------------
sleep 1
log "restoring the link"
restore_link
wait_both active 120 || fail "no re-join after the restore"
log "after the restore: a sees b active after ${TA}s, b sees a active after ${TB}s"
sleep 2
# still both alive after the heal?
"$HB" status "$NSA" "$WA" >/dev/null || fail "node a died after the heal"
"$HB" status "$NSB" "$WB" >/dev/null || fail "node b died after the heal"

# ---- stop -------------------------------------------------------------
log "stopping a (SIGTERM)"
TX=$(now)
"$HB" stop "$NSA" "$WA"
log "a stopped after $(since "$TX")s"
s=$(now)
while st=$("$HB" cl_status "$NSB" "$WB" nodestatus a 2>/dev/null) || true; [ "$st" != dead ]; do
    awk -v a="$s" -v b="$(now)" 'BEGIN { exit !(b - a > 60) }' && fail "b never saw a dead after a's stop"
    sleep 0.05
done
log "b sees a dead $(since "$s")s after a's stop returned (a's graceful stop sends no shutdown notice with -M: b waits for deadtime)"
TX=$(now)
"$HB" stop "$NSB" "$WB"
log "b stopped after $(since "$TX")s"

echo
echo "==== node a log ($WA/ha-log) ===="
cat "$WA/ha-log"
echo "==== node b log ($WB/ha-log) ===="
cat "$WB/ha-log"

left=$(ip netns pids "$NSA"; ip netns pids "$NSB")
[ -z "$left" ] || fail "processes left in the namespaces: $left"
