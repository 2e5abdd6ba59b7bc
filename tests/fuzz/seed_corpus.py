#!/usr/bin/python3
"""Seeds the packet corpora from the golden packets, and the swarm corpus from the API
documents of a real Swarm (tests/data/swarm), compacted (run once; libFuzzer grows them).

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


# meshlb-swarm: eight parts separated by "\n\x1e\n" (tests/fuzz/swarm_fuzz.cc).
import json

data = os.path.join(here, "..", "data", "swarm")
load = lambda f: json.load(open(os.path.join(data, f)))
c = lambda o: json.dumps(o, separators=(",", ":"))
sw, net, nodes = load("swarm.json"), load("network.json"), load("nodes.json")
svcs, tasks, enc = load("services.json"), load("tasks.json"), load("network-encrypted.json")
network = lambda n: {"Id": n["Id"][:10], "Name": n["Name"], "Driver": "overlay",
                     "Options": n["Options"], "IPAM": {"Config": n["IPAM"]["Config"]}}
docs = [
    c({"DataPathPort": sw.get("DataPathPort", 4789)}),
    c(network(net)),
    c([{"ID": n["ID"][:5], "Status": n["Status"]} for n in nodes]),
    c([{"ID": s["ID"][:5], "Spec": {"Name": s["Spec"]["Name"]},
        "Endpoint": {"Ports": s["Endpoint"].get("Ports", [])}} for s in svcs]),
    c([{"ID": t["ID"][:5], "ServiceID": t["ServiceID"][:5], "NodeID": t["NodeID"][:5],
        "DesiredState": t["DesiredState"], "CreatedAt": t["CreatedAt"],
        "Status": {"State": t["Status"]["State"]},
        "NetworksAttachments": [{"Network": {"ID": a["Network"]["ID"][:10]},
                                 "Addresses": a["Addresses"]}
                                for a in t.get("NetworksAttachments", [])]} for t in tasks]),
]
listings = ["FWM  1056656 rr\n  -> 198.18.128.3:80  Masq  1  0  0\n"
            "  -> 198.18.128.9:80  Masq  0  3  1\nFWM  256 rr\n",
            "-A PREROUTING -d 198.18.0.1/32 -p tcp -m tcp --dport 8080 -j MARK "
            "--set-xmark 0x101f90/0xffffffff\n",
            "-A POSTROUTING -d 198.18.128.0/24 -m ipvs --ipvs -j SNAT --to-source 198.18.128.250\n"]
updating = json.loads(docs[3])
updating[0]["PreviousSpec"] = {"EndpointSpec": {"Ports": []}}
updating[0]["UpdateStatus"] = {"StartedAt": "2026-12-02T00:09:00.5Z"}
for parts in (docs + listings, docs + ["", "", ""],
              [docs[0], c(network(enc))] + docs[2:] + ["", "", ""],
              docs[:3] + [c(updating), docs[4]] + listings):
    d = "\n\x1e\n".join(parts).encode()
    with open(os.path.join(here, "corpus", "swarm", hashlib.sha1(d).hexdigest()), "wb") as f:
        f.write(d)
