#!/usr/bin/env bash
# hb-node.sh — run ONE real Heartbeat 3.0.6 node (Debian bookworm package
# `heartbeat`, membership only) inside an existing network namespace, with a
# private configuration and private state, so that several nodes can run on
# one machine without touching the host's /etc/ha.d, /var/lib/heartbeat or
# /run/heartbeat.
#
# Usage:
#   hb-node.sh start     NETNS WORKDIR          start heartbeat -f in NETNS
#   hb-node.sh cl_status NETNS WORKDIR ARGS...  run `cl_status ARGS` next to it
#   hb-node.sh exec      NETNS WORKDIR CMD...   run any command next to it
#   hb-node.sh status    NETNS WORKDIR          running? (rc 0 yes, 3 no)
#   hb-node.sh stop      NETNS WORKDIR          SIGTERM, wait, then SIGKILL
#
# WORKDIR layout (only ha.d/ must exist beforehand):
#   ha.d/ha.cf, ha.d/authkeys (forced to 0600), [ha.d/haresources],
#   [ha.d/nodeinfo]           -> bind-mounted on /etc/ha.d
#   lib/                      -> /var/lib/heartbeat  (hb_generation, hb_uuid, fifo, ...)
#   run/                      -> /run/heartbeat == /var/run/heartbeat (API socket `register`)
#   rsctmp/                   -> /run/resource-agents
#   pid                       master control process pid (written here)
#   mntns                     its mount namespace id (used by stop to find stragglers)
#   stdout.log                heartbeat's stdout/stderr
#   (logs go wherever ha.cf's logfile/debugfile say, e.g. WORKDIR/ha-log)
#
# Node name: first line of ha.d/nodeinfo (heartbeat itself reads it; this
# script appends the required trailing newline if missing), else $HB_NODENAME
# (then written to ha.d/nodeinfo). The process also gets its own UTS namespace
# with hostname = node name, so `uname -n` in resource scripts agrees.
#
# How it is isolated: `ip netns exec NETNS unshare --mount --propagation private
# --uts sh -c '<bind mounts>; exec heartbeat -f'`. Inside the private mount
# namespace a tmpfs is mounted on /run (heartbeat hard-codes /run/heartbeat.pid,
# which would otherwise collide between nodes and with the host); the host's
# other /run entries stay reachable through symlinks into a bind of the
# original /run. Nothing is mounted in the host namespace; all mounts vanish
# with the last process of the node.
#
# Without ha.d/haresources (and without crm/pacemaker in ha.cf) heartbeat is
# started with -M (no resource management), otherwise it refuses to start with
# "Cannot open resources file [/etc/ha.d//haresources]".
#
# Environment:
#   HB_NODENAME        node name if ha.d/nodeinfo is absent
#   HB_ARGS            extra heartbeat arguments (e.g. "-d" for debug)
#   HB_START_WAIT      seconds start waits for heartbeat to settle (default 10)
#   HB_STOP_TIMEOUT    seconds stop waits after SIGTERM before SIGKILL (default 30)
set -euo pipefail

HB_BIN=/usr/libexec/heartbeat/heartbeat
PROG=${0##*/}

die()  { echo "$PROG: $*" >&2; exit 1; }
warn() { echo "$PROG: $*" >&2; }
usage() {
    sed -n '/^# Usage:/,/^# WORKDIR/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 3 ] || usage
CMD=$1 NETNS=$2 WORKDIR=$3
shift 3
[ "$(id -u)" = 0 ] || die "must run as root"
[ -d "$WORKDIR" ] || die "WORKDIR $WORKDIR is not a directory"
WORKDIR=$(cd "$WORKDIR" && pwd -P)
case $WORKDIR in
    *[[:space:]]*) die "WORKDIR must not contain whitespace: $WORKDIR";;
esac
PIDFILE=$WORKDIR/pid
MNTNSFILE=$WORKDIR/mntns

netns_path() { echo "/run/netns/$NETNS"; }
check_netns() { [ -e "$(netns_path)" ] || die "network namespace '$NETNS' does not exist (ip netns add $NETNS)"; }

# pid of our running master control process, or nothing
running_pid() {
    local pid
    [ -s "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    case $pid in ''|*[!0-9]*) return 1;; esac
    if ! is_master "$pid"; then
        # heartbeat restarts itself (a healed partition, SIGHUP) by re-exec and fork:
        # the master then has a new pid in the same mount namespace.
        pid=$(for p in $(ns_pids); do is_master "$p" && echo "$p"; done | head -n1)
        [ -n "$pid" ] || return 1
        echo "$pid" > "$PIDFILE"
    fi
    echo "$pid"
}

is_master() {
    local exe
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    [ "$exe" = "$HB_BIN" ] || return 1
    # must be in the netns we were told about
    [ "$(stat -L -c %i "/proc/$1/ns/net")" = "$(stat -L -c %i "$(netns_path)" 2>/dev/null)" ] || return 1
    case $({ tr '\0' ' ' < "/proc/$1/cmdline"; } 2>/dev/null) in
        "heartbeat: master control process"*|"$HB_BIN"*) return 0;;
    esac
    return 1
}

# all pids whose mount namespace is the recorded one and whose network
# namespace is NETNS (heartbeat + its children + nsenter'd tools)
ns_pids() {
    local want net p
    [ -s "$MNTNSFILE" ] || return 0
    want=$(cat "$MNTNSFILE")
    net="net:[$(stat -L -c %i "$(netns_path)" 2>/dev/null)]"
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$want" ] &&
            [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$net" ] && echo "${p#/proc/}"
    done
    return 0
}

# state (R, S, Z...) and ppid of a pid: "STATE PPID"
proc_state() {
    local l
    { read -r l < "/proc/$1/stat"; } 2>/dev/null || return 1
    l=${l##*) }
    echo "${l%% *} $(echo "$l" | cut -d' ' -f2)"
}

children_of() {  # direct children of $1
    local p l
    for p in /proc/[0-9]*; do
        { read -r l < "$p/stat"; } 2>/dev/null || continue
        l=${l##*) }; l=${l#* }
        [ "${l%% *}" = "$1" ] && echo "${p#/proc/}"
    done
    return 0
}

node_name() {
    local n
    if [ -f "$WORKDIR/ha.d/nodeinfo" ]; then
        n=$(head -n1 "$WORKDIR/ha.d/nodeinfo")
    else
        n=${HB_NODENAME:-}
    fi
    printf '%s' "$n" | tr 'A-Z' 'a-z'
}

prepare_workdir() {
    local d=$WORKDIR/ha.d f
    [ -f "$d/ha.cf" ]    || die "$d/ha.cf missing"
    [ -f "$d/authkeys" ] || die "$d/authkeys missing"
    chmod 600 "$d/authkeys"          # heartbeat refuses group/world-readable authkeys
    if [ -f "$d/nodeinfo" ]; then
        # heartbeat ignores a first line without trailing newline
        [ -z "$(tail -c1 "$d/nodeinfo")" ] || echo >> "$d/nodeinfo"
    elif [ -n "${HB_NODENAME:-}" ]; then
        printf '%s\n' "$HB_NODENAME" > "$d/nodeinfo"
    else
        warn "no ha.d/nodeinfo and no HB_NODENAME: node name will be the host's uname -n ($(uname -n))"
    fi
    # /etc/ha.d is replaced wholesale: bring the packaged helpers (harc, rc.d,
    # resource.d, shellfuncs) along, without overwriting anything the user put there.
    for f in harc shellfuncs README.config; do
        [ -e "$d/$f" ] || { [ -e "/etc/ha.d/$f" ] && cp -a "/etc/ha.d/$f" "$d/$f"; } || true
    done
    for f in rc.d resource.d; do
        if [ -d "/etc/ha.d/$f" ]; then
            mkdir -p "$d/$f"
            cp -a -n "/etc/ha.d/$f/." "$d/$f/"
        fi
    done
    # /var/lib/heartbeat skeleton (same as the package's)
    install -d -m 0755 "$WORKDIR/lib" "$WORKDIR/lib/api" "$WORKDIR/lib/casual" \
        "$WORKDIR/lib/ckpt" "$WORKDIR/lib/lrm" "$WORKDIR/lib/cores"
    install -d -m 0750 -o hacluster -g haclient "$WORKDIR/lib/ccm" "$WORKDIR/lib/crm" "$WORKDIR/lib/pengine"
    install -d -m 0700 -o root      "$WORKDIR/lib/cores/root"
    install -d -m 0700 -o hacluster "$WORKDIR/lib/cores/hacluster"
    install -d -m 0700 -o nobody    "$WORKDIR/lib/cores/nobody"
    # /run/heartbeat skeleton (package tmpfiles.d)
    install -d -m 0750 -o hacluster -g haclient "$WORKDIR/run" "$WORKDIR/run/ccm" \
        "$WORKDIR/run/crm" "$WORKDIR/run/dopd"
    install -d -m 0755 "$WORKDIR/rsctmp" "$WORKDIR/.hostrun"
}

# Runs inside `ip netns exec NETNS unshare --mount --propagation private --uts`.
# $1 = WORKDIR, $2 = node name (may be empty), rest = heartbeat args.
INNER='
set -e
W=$1; N=$2; shift 2
[ -n "$N" ] && hostname "$N"
mount --bind /run "$W/.hostrun"                 # keep the host /run reachable
mount -t tmpfs -o mode=0755,size=16m hb-run /run
for e in "$W"/.hostrun/* "$W"/.hostrun/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case ${e##*/} in heartbeat|heartbeat.pid|resource-agents|crm) continue;; esac
    ln -s "$e" "/run/${e##*/}"
done
mkdir -p /run/heartbeat /run/resource-agents /run/crm
mount --bind "$W/run"    /run/heartbeat             # = /var/run/heartbeat
mount --bind "$W/rsctmp" /run/resource-agents
mount --bind "$W/ha.d"   /etc/ha.d
mount --bind "$W/lib"    /var/lib/heartbeat
chown hacluster:haclient /run/crm; chmod 0750 /run/crm
echo $$ > "$W/pid"
readlink /proc/self/ns/mnt > "$W/mntns"
exec '"$HB_BIN"' -f "$@"
'

cmd_start() {
    check_netns
    [ -x "$HB_BIN" ] || die "$HB_BIN not found (apt-get install heartbeat)"
    if pid=$(running_pid); then die "already running in $NETNS (pid $pid)"; fi
    prepare_workdir
    rm -f "$PIDFILE" "$MNTNSFILE"
    local name; name=$(node_name)
    local logf; logf=$(awk '$1 == "logfile" { print $2 }' "$WORKDIR/ha.d/ha.cf" | tail -n1)
    local logl=0; [ -n "$logf" ] && [ -f "$logf" ] && logl=$(wc -l < "$logf")
    local args=${HB_ARGS:-}
    # membership only: without haresources (and without crm/pacemaker) heartbeat
    # refuses to start ("Cannot open resources file"); -M = no resource management
    if [ ! -e "$WORKDIR/ha.d/haresources" ] &&
       ! grep -Eqi '^[[:space:]]*(crm|pacemaker)[[:space:]]+(on|yes|true|y|1|respawn|minimal|manual|ccm-only|valgrind)' "$WORKDIR/ha.d/ha.cf"; then
        args="-M $args"
    fi
    # setsid: own session, immune to the caller's terminal. It normally just
    # execs (so $! ends up being heartbeat itself); if it has to fork, -w keeps
    # it around as heartbeat's parent so $! stays meaningful.
    # shellcheck disable=SC2086
    setsid -w ip netns exec "$NETNS" \
        unshare --mount --propagation private --uts \
        sh -c "$INNER" hb-node "$WORKDIR" "$name" $args \
        </dev/null >>"$WORKDIR/stdout.log" 2>&1 &
    local launcher=$! i pid="" c waited=${HB_START_WAIT:-10}
    # Wait until heartbeat was exec'ed and has forked its media reader(s)
    # ("heartbeat: read: ucast IF"): that only happens once ha.cf/authkeys
    # were accepted and the media opened. Then make sure it survives 0.5 s
    # more (a medium that fails to open makes the master exit right after).
    for ((i = 0; i < waited * 10; i++)); do
        if pid=$(running_pid); then
            for c in $(children_of "$pid"); do
                case $({ tr '\0' ' ' < "/proc/$c/cmdline"; } 2>/dev/null) in
                    "heartbeat: read:"*)
                        sleep 0.5
                        if running_pid >/dev/null && ! gone "$pid"; then
                            echo "heartbeat node '${name:-$(uname -n)}' started in netns $NETNS: pid $pid"
                            return 0
                        fi;;
                esac
            done
        fi
        if ! kill -0 "$launcher" 2>/dev/null && ! running_pid >/dev/null; then
            break
        fi
        sleep 0.1
    done
    warn "heartbeat failed to start in $NETNS (see $WORKDIR/stdout.log${logf:+ and $logf})"
    if [ -n "$logf" ] && [ -f "$logf" ]; then
        tail -n +"$((logl + 1))" "$logf" | grep -E 'ERROR|CRIT' | head -n 10 >&2 || true
    else
        tail -n 20 "$WORKDIR/stdout.log" >&2 || true
    fi
    if pid=$(running_pid); then kill -9 "$pid" 2>/dev/null || true; fi
    kill_ns_pids
    return 1
}

cmd_exec() {
    check_netns
    local pid
    pid=$(running_pid) || die "heartbeat is not running for $WORKDIR in $NETNS"
    exec nsenter --target "$pid" --mount --net --uts -- "$@"
}

cmd_status() {
    local pid
    if pid=$(running_pid); then
        echo "running pid $pid ($(ns_pids | wc -l) processes)"
        return 0
    fi
    echo "stopped"
    return 3
}

gone() {  # pid no longer exists or is a zombie
    [ -d "/proc/$1" ] || return 0
    case $(proc_state "$1") in Z*) return 0;; esac
    return 1
}

# whatever is left in the node's private mount namespace (children, stuck
# master, nsenter'd tools) is killed by pid
kill_ns_pids() {
    local left i
    for ((i = 0; i < 50; i++)); do
        left=$(ns_pids)
        [ -z "$left" ] && return 0
        # shellcheck disable=SC2086
        kill -9 $left 2>/dev/null || true
        sleep 0.1
    done
    warn "processes still alive: $(ns_pids | tr '\n' ' ')"
    return 1
}

cmd_stop() {
    local pid i t=${HB_STOP_TIMEOUT:-30}
    if pid=$(running_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < t * 10; i++)); do
            gone "$pid" && break
            sleep 0.1
        done
        gone "$pid" || warn "heartbeat pid $pid did not stop within ${t}s, sending SIGKILL"
    fi
    kill_ns_pids || return 1
    rm -f "$PIDFILE" "$MNTNSFILE"
    echo "heartbeat in $NETNS stopped"
}

case $CMD in
    start)     cmd_start ;;
    stop)      cmd_stop ;;
    status)    cmd_status ;;
    cl_status) cmd_exec cl_status "$@" ;;
    exec)      [ $# -ge 1 ] || usage; cmd_exec "$@" ;;
    *)         usage ;;
esac
