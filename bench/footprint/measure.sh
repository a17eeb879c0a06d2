#!/usr/bin/env bash
# measure.sh PID...  — idle footprint of one or more process trees.
#
# For every root PID given, all its descendants are included (heartbeat forks
# a FIFO reader and a read/write process per medium; keepalived -n has a parent
# and a VRRP child). For the whole set it prints, per process and summed:
#   RSS, PSS, USS (Private_Clean+Private_Dirty) in kB from /proc/PID/smaps_rollup,
#   VmLck (mlocked) from /proc/PID/status
#   CPU seconds used during the window: utime+stime (fields 14,15 of
#   /proc/PID/stat, divided by `getconf CLK_TCK`) and, with ns resolution,
#   the sum of se.sum_exec_runtime over /proc/PID/task/*/sched (if present).
#
# Environment:
#   DURATION [60]   measurement window in seconds
#   LABEL    []     text put on the TOTAL line
# The last line is machine-readable:
#   TOTAL label=... procs=N rss_kB=... pss_kB=... uss_kB=... locked_kB=... cpu_s=... sched_cpu_s=... window_s=... cpu_pct=...
# Memory is sampled at the end of the window; processes that appear or vanish
# during the window are reported on stderr (their CPU is then incomplete).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 PID..." >&2; exit 2; }
DURATION=${DURATION:-60}
LABEL=${LABEL:-}
HZ=$(getconf CLK_TCK)

# pid -> ppid for every process, then a breadth-first walk from the roots
descendants() {
    local -A kids=()
    local p l pid ppid
    for p in /proc/[0-9]*; do
        { read -r l < "$p/stat"; } 2>/dev/null || continue
        pid=${p#/proc/}
        [ "$pid" = $$ ] && continue          # not ourselves (nor our subshells)
        l=${l##*) }; l=${l#* }; ppid=${l%% *}
        kids[$ppid]+="$pid "
    done
    local queue=("$@") out=() cur
    while [ ${#queue[@]} -gt 0 ]; do
        cur=${queue[0]}; queue=("${queue[@]:1}")
        [ -d "/proc/$cur" ] || continue
        out+=("$cur")
        # shellcheck disable=SC2206
        [ -n "${kids[$cur]:-}" ] && queue+=(${kids[$cur]})
    done
    printf '%s\n' "${out[@]}" | sort -n -u
}

ticks() {  # utime+stime of a process (all threads), in clock ticks
    local l
    { read -r l < "/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
    l=${l##*) }
    # after "comm) ": state=1 ppid=2 ... utime=12 stime=13
    echo "$l" | awk '{ print $12 + $13 }'
}

sched_ms() {  # sum of se.sum_exec_runtime (ms) over all threads, or -1
    local f s=0 v found=0
    for f in /proc/"$1"/task/*/sched; do
        v=$(awk '/^se.sum_exec_runtime/ { print $3 }' "$f" 2>/dev/null) || continue
        [ -n "$v" ] || continue
        found=1
        s=$(awk -v a="$s" -v b="$v" 'BEGIN { printf "%.6f", a + b }')
    done
    [ $found = 1 ] && echo "$s" || echo -1
}

mem() {  # "rss pss uss locked" in kB
    local m l
    m=$(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } /^Private_(Clean|Dirty):/ { u += $2 }
             END { printf "%d %d %d\n", r, p, u }' "/proc/$1/smaps_rollup" 2>/dev/null) || m="0 0 0"
    l=$(awk '/^VmLck:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || true
    echo "$m ${l:-0}"
}

for r in "$@"; do
    [ -d "/proc/$r" ] || { echo "no such process: $r" >&2; exit 1; }
done

mapfile -t P0 < <(descendants "$@")
declare -A T0 S0
for p in "${P0[@]}"; do T0[$p]=$(ticks "$p"); S0[$p]=$(sched_ms "$p"); done
t_start=$(date +%s.%N)
sleep "$DURATION"
t_end=$(date +%s.%N)
mapfile -t P1 < <(descendants "$@")
declare -A T1 S1
for p in "${P1[@]}"; do T1[$p]=$(ticks "$p"); S1[$p]=$(sched_ms "$p"); done
window=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.2f", b - a }')

for p in "${P0[@]}"; do [ -n "${T1[$p]:-}" ] || echo "note: pid $p exited during the window" >&2; done
for p in "${P1[@]}"; do [ -n "${T0[$p]:-}" ] || echo "note: pid $p appeared during the window" >&2; done

printf '%-8s %-8s %9s %9s %9s %9s %10s %12s  %s\n' PID PPID RSS_kB PSS_kB USS_kB LOCKED_kB CPU_s SCHED_CPU_s COMMAND
tr=0 tp=0 tu=0 tl=0 tt=0 ts=0 n=0 sched_ok=1
for p in "${P1[@]}"; do
    [ -d "/proc/$p" ] || continue
    read -r rss pss uss lck < <(mem "$p")
    dt=$(( T1[$p] - ${T0[$p]:-0} ))
    # a process that appeared during the window counts from 0
    if [ "${S1[$p]}" = -1 ] || [ "${S0[$p]:-0}" = -1 ]; then
        ds=-1; sched_ok=0
    else
        ds=$(awk -v a="${S0[$p]:-0}" -v b="${S1[$p]}" 'BEGIN { printf "%.4f", (b - a) / 1000 }')
        ts=$(awk -v a="$ts" -v b="$ds" 'BEGIN { printf "%.4f", a + b }')
    fi
    ppid=$(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/$p/stat" 2>/dev/null) || continue
    cmd=$(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-60)
    printf '%-8s %-8s %9d %9d %9d %9d %10.2f %12s  %s\n' "$p" "$ppid" "$rss" "$pss" "$uss" "$lck" \
        "$(awk -v t="$dt" -v hz="$HZ" 'BEGIN { print t / hz }')" "$ds" "$cmd"
    tr=$((tr + rss)); tp=$((tp + pss)); tu=$((tu + uss)); tl=$((tl + lck)); tt=$((tt + dt)); n=$((n + 1))
done
cpu=$(awk -v t="$tt" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
[ $sched_ok = 1 ] || ts=-1
pct=$(awk -v c="$cpu" -v s="$ts" -v w="$window" 'BEGIN { printf "%.3f", 100 * (s >= 0 ? s : c) / w }')
printf '%-8s %-8s %9d %9d %9d %9d %10.2f %12s  (%d processes, %ss window)\n' SUM "" "$tr" "$tp" "$tu" "$tl" "$cpu" "$ts" "$n" "$window"
echo "TOTAL label=${LABEL:-none} procs=$n rss_kB=$tr pss_kB=$tp uss_kB=$tu locked_kB=$tl cpu_s=$cpu sched_cpu_s=$ts window_s=$window cpu_pct=$pct"
