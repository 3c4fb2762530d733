"""read_from_replicas: writes then reads through Puerta; values must be right (replicas caught up).

usage: redis_replicas.py HOST PORT write|read
"""
import sys
import time

import redis

host, port = sys.argv[1], int(sys.argv[2])
r = redis.Redis(host=host, port=port, protocol=2, socket_timeout=30)
keys = [f"rep:{i}" for i in range(300)]
if sys.argv[3] == "write":
    for k in keys:
        assert r.set(k, k) is True
    print("ALL OK")
    sys.exit(0)
# Replication is asynchronous: give the replicas a moment, then every read must match.
deadline = time.time() + 30
while True:
    values = [r.get(k) for k in keys]
    if values == [k.encode() for k in keys]:
        break
    assert time.time() < deadline, "replicas never caught up"
    time.sleep(0.5)
assert r.mget(keys) == [k.encode() for k in keys]
print("ALL OK")
