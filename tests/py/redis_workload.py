"""Concurrent clients writing and reading back their own keys through Puerta until STOP_FILE exists,
then a check that every acknowledged write is readable.

usage: redis_workload.py HOST PORT STOP_FILE CLIENTS MODE
  MODE strict:   any error, wrong value or missing acknowledged write fails.
  MODE tolerant: errors are allowed (a killed master); wrong values are not; acknowledged writes that
                 are missing afterwards (lost by Redis' asynchronous replication on a kill) are reported.
Prints one JSON line with the counters, then "WORKLOAD OK" on success.
"""
import json
import os
import random
import sys
import threading
import time

import redis

import tls_env

host, port, stop_file, clients, mode = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])

lock = threading.Lock()
acked = {}          # key -> value acknowledged by SET
uncertain = set()   # keys whose SET failed: may or may not have been applied
errors = []
wrong = []
vanished = []       # reads that found nothing where an acknowledged value was (lost by a kill)
ops = [0]


def check(what, got, expected):
    """A different value is always wrong; nothing at all is data lost by the cluster (a kill)."""
    if got == expected.encode():
        return
    with lock:
        if got is None:
            vanished.append(what)
        else:
            wrong.append(f"{what}: {got!r} != {expected!r}")


def client(cid):
    r = redis.Redis(host=host, port=port, protocol=2, **tls_env.redis_py_kwargs(), socket_timeout=30, retry_on_timeout=False)
    mine = []
    i = 0
    while not os.path.exists(stop_file):
        key = f"w:{cid}:{i}"
        value = f"{cid}-{i}-{random.random()}"
        i += 1
        try:
            assert r.set(key, value) is True
            with lock:
                acked[key] = value
            mine.append(key)
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            with lock:
                errors.append(f"SET {key}: {type(e).__name__}: {e}")
                uncertain.add(key)
            time.sleep(0.05)
            continue
        try:
            got = r.get(key)
            check(f"GET {key}", got, value)
            old = random.choice(mine)
            with lock:
                old_value = acked[old]
            check(f"GET old {old}", r.get(old), old_value)
            if len(mine) >= 5 and i % 10 == 0:
                sample = random.sample(mine, 5)
                got = r.mget(sample)
                with lock:
                    exp = [acked[k].encode() for k in sample]
                for k, g, e in zip(sample, got, exp):
                    check(f"MGET {k}", g, e.decode())
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"read {key}: {type(e).__name__}: {e}")
            time.sleep(0.05)
        with lock:
            ops[0] += 1


threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
for t in threads:
    t.start()
print("STARTED", flush=True)
for t in threads:
    t.join()

# Verification with a fresh connection, after the cluster settled.
r = redis.Redis(host=host, port=port, protocol=2, **tls_env.redis_py_kwargs(), socket_timeout=60)
missing = []
keys = sorted(acked)
for start in range(0, len(keys), 500):
    batch = keys[start:start + 500]
    for attempt in range(20):
        try:
            values = r.mget(batch)
            break
        except Exception as e:  # noqa: BLE001
            if attempt == 19:
                raise
            time.sleep(0.5)
    for k, got in zip(batch, values):
        if got is None:
            missing.append(k)
        elif got != acked[k].encode():
            wrong.append(f"final {k}: {got!r} != {acked[k]!r}")

summary = {
    "acked": len(acked), "ops": ops[0], "errors": len(errors), "wrong": len(wrong),
    "missing": len(missing), "vanished": len(vanished), "uncertain": len(uncertain),
    "first_errors": errors[:5], "first_wrong": wrong[:5], "first_missing": missing[:5],
}
print(json.dumps(summary), flush=True)
ok = not wrong and len(acked) > 0
if mode == "strict":
    ok = ok and not errors and not missing and not vanished
if ok:
    print("WORKLOAD OK")
sys.exit(0 if ok else 1)
