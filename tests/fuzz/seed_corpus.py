#!/usr/bin/python3
"""Seeds both corpora from the golden packets (run once; libFuzzer grows them).

  /usr/bin/python3 tests/fuzz/seed_corpus.py
"""
import hashlib
import os

here = os.path.dirname(os.path.abspath(__file__))
golden = os.path.join(here, "..", "data", "golden_packets.txt")
params = [bytes([m]) + bytes(range(1, 40)) for m in (1, 2, 3, 15)]
for line in open(golden):
    if line.startswith("#") or not line.strip():
        continue
    name, hexbytes = line.split()
    pkt = bytes.fromhex(hexbytes)
    for corpus, data in (("parse", [pkt]), ("nat_vxlan", [p + pkt for p in params])):
        for d in data:
            path = os.path.join(here, "corpus", corpus, hashlib.sha1(d).hexdigest())
            with open(path, "wb") as f:
                f.write(d)
