#!/usr/bin/env python3
"""Client-observed failover outage, one trial.

Started in the *switch* namespace (`ip netns exec SW probe.py --client-ns CLIENT ...`): it
opens a netlink socket there (to pull the cable by itself, at a time it knows to the
microsecond), then moves into the client namespace for everything else.

Every --interval (5 ms) it starts a probe: a non-blocking TCP connect to VIP:80 and
`GET /`; the answer's body names the node. A probe that has no answer within
--probe-timeout (200 ms) counts as failed and is reset. Probes overlap, so a dead address
costs no more than its own timeouts and the first probe sent after the address moved tells.

After --idle seconds it sets the switch port of the active node down (RTM_NEWLINK,
IFF_UP cleared) and keeps probing until a probe is answered by a node other than --old
(or --timeout), then --tail seconds more. Prints one JSON object:

  t_cut            CLOCK_MONOTONIC ms at which the netlink request was sent
  cut_ack_ms       how long the kernel took to acknowledge it
  outage_ms        cut -> first successful answer by the new node (answer received)
  first_new_sent_ms  when that probe was sent (relative to the cut)
  new              the node that answered
  last_old_ms      last answer from --old received after the cut (null: none)
  idle_*           probes in the idle period: count, failed, answered by another node,
                   longest interval with no successful answer
  after_fail_new   probes failed after the first answer from the new node (flaps)
"""
import argparse
import ctypes
import errno
import json
import os
import selectors
import socket
import struct
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--client-ns", required=True)
p.add_argument("--cut-port", required=True, help="the switch port (interface in this netns) to set down")
p.add_argument("--vip", required=True)
p.add_argument("--http-port", type=int, default=80)
p.add_argument("--old", required=True, help="the node expected to answer before the cut")
p.add_argument("--idle", type=float, default=3.0)
p.add_argument("--timeout", type=float, default=30.0)
p.add_argument("--tail", type=float, default=0.3)
p.add_argument("--interval", type=float, default=0.005)
p.add_argument("--probe-timeout", type=float, default=0.2)
p.add_argument("--no-cut", action="store_true", help="only probe for --idle seconds (soak)")
a = p.parse_args()

def now_ms():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e6

# --- netlink socket in the switch namespace -------------------------------------------
ifindex = socket.if_nametoindex(a.cut_port)
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
nl.bind((0, 0))

def set_link(up):
    RTM_NEWLINK, NLM_F_REQUEST, NLM_F_ACK, IFF_UP = 16, 1, 4, 1
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex, IFF_UP if up else 0, IFF_UP)
    hdr = struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    t = now_ms()
    nl.send(hdr + body)
    resp = nl.recv(4096)
    t_ack = now_ms()
    (err,) = struct.unpack_from("=i", resp, 16)
    if err != 0:
        sys.exit(f"probe: RTM_NEWLINK on {a.cut_port}: {os.strerror(-err)}")
    return t, t_ack - t

# --- into the client namespace ---------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(f"/run/netns/{a.client_ns}", os.O_RDONLY)
if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
    sys.exit(f"probe: setns {a.client_ns}: {os.strerror(ctypes.get_errno())}")
os.close(fd)

REQ = b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n"
LINGER0 = struct.pack("ii", 1, 0)
sel = selectors.DefaultSelector()
live = {}          # sock -> [t_sent, stage, data]
results = []       # (t_sent, t_done, node or None)

def start_probe():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    t = now_ms()
    rc = s.connect_ex((a.vip, a.http_port))
    if rc not in (0, errno.EINPROGRESS):
        results.append((t, now_ms(), None))
        s.close()
        return
    live[s] = [t, 0, b""]
    sel.register(s, selectors.EVENT_WRITE)

def finish(s, node):
    t_sent = live.pop(s)[0]
    sel.unregister(s)
    s.close()
    results.append((t_sent, now_ms(), node))

def on_ready(s):
    st = live[s]
    if st[1] == 0:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            return finish(s, None)
        try:
            s.send(REQ)
        except OSError:
            return finish(s, None)
        st[1] = 1
        sel.modify(s, selectors.EVENT_READ)
        return
    try:
        chunk = s.recv(4096)
    except OSError:
        return finish(s, None)
    if chunk:
        st[2] += chunk
        return
    head, _, body = st[2].partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0] + b" "
    finish(s, body.strip().decode(errors="replace") if ok and body.strip() else None)

def run_until(stop):
    """Probes until stop(now) says so."""
    nxt = now_ms()
    while True:
        t = now_ms()
        if stop(t):
            return
        if t >= nxt:
            start_probe()
            nxt += a.interval * 1000
            if nxt < t:  # we were late: do not burst
                nxt = t + a.interval * 1000
        for s in [s for s, st in live.items() if t - st[0] > a.probe_timeout * 1000]:
            finish(s, None)
        wait = max(0.0, (nxt - now_ms()) / 1000)
        for key, _ in sel.select(wait):
            on_ready(key.fileobj)

def max_gap(ok_times, start, end):
    pts = [start] + sorted(ok_times) + [end]
    return max(b - a_ for a_, b in zip(pts, pts[1:]))

t0 = now_ms()
run_until(lambda t: t - t0 >= a.idle * 1000)
idle = list(results)
ok_idle = [r[1] for r in idle if r[2] is not None]
out = {
    "idle_s": a.idle,
    "idle_probes": len(idle),
    "idle_failed": sum(1 for r in idle if r[2] is None),
    "idle_other": sum(1 for r in idle if r[2] not in (None, a.old)),
    "idle_max_gap_ms": round(max_gap(ok_idle, t0, now_ms()), 1),
}
if a.no_cut:
    print(json.dumps(out), flush=True)
    sys.exit(0)

results.clear()
t_cut, ack = set_link(False)
out["t_cut"] = round(t_cut, 3)
out["cut_ack_ms"] = round(ack, 3)
first_new = None

def cut_stop(t):
    global first_new
    if first_new is None:
        for r in results:
            if r[2] not in (None, a.old):
                first_new = r
                break
        if first_new is None:
            return t - t_cut > a.timeout * 1000
    return t - first_new[1] > a.tail * 1000

run_until(cut_stop)
for s in list(live):
    finish(s, None)
old_after = [r[1] for r in results if r[2] == a.old]
out["last_old_ms"] = round(max(old_after) - t_cut, 1) if old_after else None
if first_new:
    out["outage_ms"] = round(first_new[1] - t_cut, 1)
    out["first_new_sent_ms"] = round(first_new[0] - t_cut, 1)
    out["new"] = first_new[2]
    out["after_fail_new"] = sum(1 for r in results if r[0] > first_new[1] and r[2] is None)
else:
    out["outage_ms"] = None
out["probes_after_cut"] = len(results)
print(json.dumps(out), flush=True)
