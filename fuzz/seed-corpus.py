#!/usr/bin/env python3
"""Builds the fuzzers' seed corpora: every UDP payload of the Heartbeat captures for
wire_decode, every example configuration file for the config parsers, and a few sync
messages of the directors for lb_flow_sync."""
import json, os, shutil, struct, sys

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
for target, fname in (("config_ha_cf", "ha.cf"), ("config_authkeys", "authkeys"), ("config_haresources", "haresources"),
                      ("config_ldirectord_cf", "ldirectord.cf"), ("config_halo_toml", "halo.toml")):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    for ex in sorted(os.listdir(os.path.join(top, "examples"))):
        src = os.path.join(top, "examples", ex, fname)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(d, ex))
            n += 1

# halo.toml beyond the example: the smallest accepted file, and a director read from a file.
extra_toml = {
    "minimal": '[cluster]\nnodes = ["a", "b"]\n[[link]]\ntype = "ucast"\niface = "eth0"\npeers = ["10.0.0.2"]\n',
    "director-file": '[cluster]\nnodes = ["a", "b"]\n[[link]]\ntype = "bcast"\niface = "eth0"\n'
                     '[auth]\nactive = 1\nkeys = [{ index = 1, method = "crc" }]\n[director]\nfile = "ldirectord.cf"\n',
}
for name, text in extra_toml.items():
    with open(os.path.join(corpus, "config_halo_toml", name), "w") as out:
        out.write(text)
    n += 1

# lb_flow_sync: the target tags each input with the key's HMAC itself, so seeds are the JSON
# payloads of flows::encode (one round of two parts, an empty table, one of many elements).
def sync(node, table, rnd, part, parts, sets):
    return json.dumps({"v": 1, "node": node, "syncid": 0, "table": table, "round": rnd,
                       "part": part, "parts": parts, "sets": sets}, separators=(",", ":"))
aff = lambda name, elems: {"name": name, "elems": elems}
seeds = {
    "part0": sync("lb1", "halo_lb", 7, 0, 2, [aff("aff_tcp_192_168_1_199_80", [[{"concat": ["10.0.0.9", 40000]}, 299]])]),
    "part1": sync("lb1", "halo_lb", 7, 1, 2, [aff("aff_tcp_192_168_1_199_80", [["10.0.0.10", 12]])]),
    "empty": sync("lb2", "halo_lb", 1, 0, 1, []),
    "many": sync("lb1", "t", 18446744073709551615, 0, 1,
                 [aff("aff_udp_x_53", [["10.0.%d.%d" % (i // 256, i % 256), i] for i in range(40)]),
                  aff("aff_tcp_x_443", [[{"concat": ["fd00::%x" % i, 443]}, 300] for i in range(5)])]),
}
d = os.path.join(corpus, "lb_flow_sync")
os.makedirs(d, exist_ok=True)
for name, payload in seeds.items():
    with open(os.path.join(d, name), "w") as out:
        out.write(payload)
    n += 1
print("seeded %d files under %s" % (n, corpus), file=sys.stderr)
