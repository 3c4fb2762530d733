"""Failovers under traffic through Puerta, measured against a smart client on the same cluster.

usage: redis_failover_hold.py HOST PORT CONTROL_DIR WRITERS READERS SEED_PORT KILLED_MASTER_PORT

WRITERS threads SET fresh keys through Puerta (even-numbered ones on keys of the master the test
kills, the others on the other masters), READERS threads GET acknowledged keys back, and one
redis-py RedisCluster (the smart client, straight to the nodes) SETs keys of the killed master.
The test writes CONTROL_DIR/kill (the time of the kill, time.time()) and then CONTROL_DIR/stop.

Checks, printed as one JSON line, then "ALL OK" when every one holds:
- Puerta's clients see at most WRITERS errors in all (the commands in flight on the killed
  connection), none for a command sent more than 0.2 s after the kill, and no wrong value.
- Every write acknowledged after the kill is readable at the end. A write acknowledged before it
  and gone afterwards was lost by Redis' asynchronous replication, which on loopback lags by well
  under a second: one acknowledged more than 1 s before the kill and gone fails the test.
- The first write on the killed shard sent after the kill succeeds no later than the smart
  client's first one + 0.2 s.
"""
import json
import os
import random
import sys
import threading
import time

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

host, port, control, writers, readers, seed_port, killed = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
    int(sys.argv[6]), int(sys.argv[7]))
stop_file = os.path.join(control, "stop")
kill_file = os.path.join(control, "kill")


def master_tags():
    """One hash tag per master, the killed master's first."""
    slots = redis.Redis(host="127.0.0.1", port=seed_port).execute_command("CLUSTER SLOTS")
    owner = {}
    for entry in slots:
        start, end, master = entry[0], entry[1], entry[2]
        for slot in range(start, end + 1):
            owner[slot] = int(master[1])
    tags = {}
    i = 0
    while len(tags) < len(set(owner.values())):
        tag = f"t{i}"
        tags.setdefault(owner[key_slot(tag.encode())], tag)
        i += 1
    first = tags.pop(killed)
    return [first] + list(tags.values())


tags = master_tags()
lock = threading.Lock()
acked = {}        # key -> (value, time acknowledged)
errors = []       # (sent, answered, what)
wrong = []
first_ok = {"proxy": [], "smart": []}   # (sent, answered) of writes on the killed shard


def kill_time():
    try:
        with open(kill_file) as f:
            return float(f.read())
    except (OSError, ValueError):
        return None


def writer(wid):
    r = redis.Redis(host=host, port=port, protocol=2, socket_timeout=30, retry_on_timeout=False)
    tag = tags[0] if wid % 2 == 0 else tags[1 + (wid // 2) % (len(tags) - 1)]
    i = 0
    while not os.path.exists(stop_file):
        key, value = f"{{{tag}}}:w:{wid}:{i}", f"{wid}-{i}-{random.random()}"
        i += 1
        sent = time.time()
        try:
            assert r.set(key, value) is True
            answered = time.time()
            with lock:
                acked[key] = (value, answered)
                if tag == tags[0]:
                    first_ok["proxy"].append((sent, answered))
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            with lock:
                errors.append((sent, time.time(), f"SET {key}: {type(e).__name__}: {e}"))
        time.sleep(0.005)


def reader(rid):
    r = redis.Redis(host=host, port=port, protocol=2, socket_timeout=30, retry_on_timeout=False)
    while not os.path.exists(stop_file):
        with lock:
            if not acked:
                key = None
            else:
                key = random.choice(list(acked)) if random.random() < 0.05 else next(reversed(acked))
                value = acked[key][0]
        if key is None:
            time.sleep(0.01)
            continue
        sent = time.time()
        try:
            got = r.get(key)
            if got is not None and got != value.encode():
                with lock:
                    wrong.append(f"GET {key}: {got!r} != {value!r}")
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append((sent, time.time(), f"GET {key}: {type(e).__name__}: {e}"))
        time.sleep(0.005)


def smart():
    rc = RedisCluster(host="127.0.0.1", port=seed_port, socket_timeout=30)
    i = 0
    while not os.path.exists(stop_file):
        key = f"{{{tags[0]}}}:smart:{i}"
        i += 1
        sent = time.time()
        try:
            rc.set(key, "v")
            with lock:
                first_ok["smart"].append((sent, time.time()))
        except Exception:  # noqa: BLE001 - the smart client's errors are its own
            time.sleep(0.005)
            continue
        time.sleep(0.005)


threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
threads += [threading.Thread(target=reader, args=(r,)) for r in range(readers)]
threads.append(threading.Thread(target=smart))
for t in threads:
    t.start()
print("STARTED", flush=True)
for t in threads:
    t.join()

killed_at = kill_time()
r = redis.Redis(host=host, port=port, protocol=2, socket_timeout=60)
keys = sorted(acked)
lost_before, lost_after = [], []
for start in range(0, len(keys), 500):
    batch = keys[start:start + 500]
    for k, got in zip(batch, r.mget(batch)):
        value, at = acked[k]
        if got is None:
            (lost_before if killed_at and at < killed_at else lost_after).append(k)
        elif got != value.encode():
            wrong.append(f"final {k}: {got!r} != {value!r}")


def recovery(who):
    """Seconds from the kill to the answer of the first write sent after it."""
    after = [answered for sent, answered in first_ok[who] if sent >= killed_at]
    return round(min(after) - killed_at, 3) if after else None


late_errors = [e for e in errors if killed_at and e[0] > killed_at + 0.2]
summary = {
    "acked": len(acked), "errors": len(errors), "late_errors": len(late_errors),
    "wrong": len(wrong), "lost_acked_before_kill": len(lost_before),
    "lost_acked_after_kill": len(lost_after),
    "proxy_recovery_s": recovery("proxy") if killed_at else None,
    "smart_recovery_s": recovery("smart") if killed_at else None,
    "first_errors": [
        f"{e[2]} (sent {e[0] - killed_at:+.3f} s after the kill)" if killed_at else e[2]
        for e in errors[:10]],
    "first_wrong": wrong[:5], "first_lost_after": lost_after[:5],
}
print(json.dumps(summary), flush=True)
checks = {
    "a kill happened": killed_at is not None,
    "writes were acknowledged": len(acked) > 0,
    f"at most {writers} errors": len(errors) <= writers,
    "no error for a command sent 0.2 s after the kill": not late_errors,
    "no wrong value": not wrong,
    "every write acknowledged after the kill is readable": not lost_after,
    "no write acknowledged 1 s before the kill is lost":
        all(acked[k][1] > killed_at - 1.0 for k in lost_before),
}
pr, sr = summary["proxy_recovery_s"], summary["smart_recovery_s"]
checks["Puerta recovers within the smart client's time + 0.2 s"] = (
    pr is not None and sr is not None and pr <= sr + 0.2)
failed = [name for name, ok in checks.items() if not ok]
if failed:
    print("FAILED:", "; ".join(failed))
    sys.exit(1)
print("ALL OK")
