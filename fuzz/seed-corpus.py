#!/usr/bin/env python3
"""Builds the fuzzers' seed corpora: every UDP payload of the Heartbeat captures for
wire_decode, every example configuration file for the config parsers."""
import os, shutil, struct, sys

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
caps = os.path.join(top, "..", "shared", "spec", "heartbeat-captures")
corpus = os.path.join(top, "fuzz", "corpus")

def payloads(fn):
    with open(fn, "rb") as f:
        gh = f.read(24)
        e = "<" if struct.unpack("<I", gh[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            incl = struct.unpack(e + "IIII", h)[2]
            d = f.read(incl)
            if d[12:14] != b"\x08\x00" or d[23] != 17:
                continue
            ihl = (d[14] & 15) * 4
            yield d[14 + ihl + 8:]

n = 0
os.makedirs(os.path.join(corpus, "wire_decode"), exist_ok=True)
for name in sorted(os.listdir(caps)):
    if name.endswith(".pcap"):
        for i, p in enumerate(payloads(os.path.join(caps, name))):
            with open(os.path.join(corpus, "wire_decode", "%s-%04d" % (name[:2], i)), "wb") as out:
                out.write(p)
            n += 1
for target, fname in (("config_ha_cf", "ha.cf"), ("config_authkeys", "authkeys"), ("config_haresources", "haresources")):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    for ex in sorted(os.listdir(os.path.join(top, "examples"))):
        src = os.path.join(top, "examples", ex, fname)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(d, ex))
            n += 1
print("seeded %d files under %s" % (n, corpus), file=sys.stderr)
