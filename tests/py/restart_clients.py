"""Clients that connect, run a few commands and hang up, in a loop, while Puerta is restarted.

usage: restart_clients.py MODE HOST PORT STOP_FILE THREADS     (MODE: redis or mongodb)

No client retries anything: every refused connection, reset or error reply is counted. Prints one
JSON line, then "ALL OK" when there were sessions and no error at all.
"""
import json
import os
import sys
import threading
import time

mode, host, port, stop_file, threads = (
    sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
lock = threading.Lock()
sessions = [0]
errors = []


def redis_session(tid, i):
    import redis
    from redis.retry import Retry
    from redis.backoff import NoBackoff
    r = redis.Redis(host=host, port=port, protocol=2, socket_timeout=10,
                    socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))
    try:
        for n in range(3):
            key = f"restart:{tid}:{i}:{n}"
            assert r.set(key, "v") is True
            assert r.get(key) == b"v"
    finally:
        r.close()


def mongodb_session(tid, i):
    import pymongo
    client = pymongo.MongoClient(host, port, directConnection=True, retryWrites=False,
                                 retryReads=False, serverSelectionTimeoutMS=5000,
                                 connectTimeoutMS=5000, socketTimeoutMS=10000)
    try:
        coll = client["restart"]["docs"]
        for n in range(3):
            coll.insert_one({"t": tid, "i": i, "n": n})
            assert coll.find_one({"t": tid, "i": i, "n": n}) is not None
    finally:
        client.close()


def worker(tid):
    session = redis_session if mode == "redis" else mongodb_session
    i = 0
    while not os.path.exists(stop_file):
        try:
            session(tid, i)
            with lock:
                sessions[0] += 1
        except Exception as e:  # noqa: BLE001 - every failure counts
            with lock:
                errors.append(f"{time.time():.3f} {type(e).__name__}: {e}")
            time.sleep(0.05)
        i += 1


pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
for t in pool:
    t.start()
print("STARTED", flush=True)
for t in pool:
    t.join()
print(json.dumps({"sessions": sessions[0], "errors": len(errors), "first_errors": errors[:10]}),
      flush=True)
if sessions[0] > 0 and not errors:
    print("ALL OK")
sys.exit(0 if sessions[0] > 0 and not errors else 1)
