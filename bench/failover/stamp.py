#!/usr/bin/env python3
"""Prefixes every line read on stdin with CLOCK_MONOTONIC in milliseconds (3 decimals), the
clock the prober uses, so a daemon's log lines can be placed on the prober's time line
(halo's own log stamps have one-second resolution). Unbuffered both ways.

    stamp.py [FIFO]   reads FIFO instead of stdin, opened read-write so that it never sees
                      end-of-file when a writer closes it (Heartbeat and its resource
                      scripts open and close their logfile for every line)."""
import os
import sys
import time

src = os.open(sys.argv[1], os.O_RDWR) if len(sys.argv) > 1 else 0

out = sys.stdout.buffer
buf = b""
while True:
    chunk = os.read(src, 65536)
    if not chunk:
        break
    t = time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e6
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for line in lines:
        out.write(b"%.3f " % t + line + b"\n")
    out.flush()
if buf:
    out.write(b"%.3f " % (time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e6) + buf + b"\n")
    out.flush()
