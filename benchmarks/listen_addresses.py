"""Which addresses does a local Ray cluster listen on? Starts ``ray.init(address="local")`` with the
``ray.init`` options given as JSON, waits for the node's processes, prints one JSON line with the TCP
listen sockets of this driver's child processes (by address), then shuts Ray down.

    flock /work/wt/heavy.lock python benchmarks/listen_addresses.py '{"include_dashboard": false}'

(measurements: docs/reliability.md, "Safe defaults").
"""

import json
import sys
import time

import psutil
import ray

kw = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
ray.init(address="local", num_cpus=2, log_to_driver=False, **kw)
time.sleep(8)
procs = {p.pid: p for p in psutil.Process().children(recursive=True)}
addrs: dict[str, set[str]] = {}
for c in psutil.net_connections(kind="inet"):
    if c.status == psutil.CONN_LISTEN and c.pid in procs:
        try:
            name = procs[c.pid].name()
        except psutil.Error:
            name = "?"
        addrs.setdefault(c.laddr.ip, set()).add(f"{name}:{c.laddr.port}")
print(json.dumps({"kwargs": kw, "listen": {k: sorted(v) for k, v in addrs.items()}, "n_procs": len(procs)}))
ray.shutdown()
