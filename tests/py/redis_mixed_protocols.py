"""One RESP2 and one RESP3 redis-py client through Puerta at the same time, on the same keys: each
writes what the other then reads, so replies of both protocols flow over the proxy at once.

usage: redis_mixed_protocols.py HOST PORT
"""
import sys
import threading

import redis

host, port = sys.argv[1], int(sys.argv[2])
keys = [f"mixed:{i}" for i in range(200)]
errors = []


def worker(protocol, me, other):
    try:
        r = redis.Redis(host=host, port=port, protocol=protocol, socket_timeout=60)
        hello = r.execute_command("HELLO")
        pairs = zip(hello[::2], hello[1::2]) if isinstance(hello, list) else hello.items()
        assert dict(pairs)[b"proto"] == protocol, hello
        for round_ in range(20):
            pipe = r.pipeline(transaction=False)
            for k in keys:
                pipe.hset(k, me, round_)
            pipe.execute()
            # The other client's field is absent or a round number, never anything else.
            for k in keys:
                fields = r.hgetall(k)
                assert fields[me.encode()] == str(round_).encode(), (k, fields)
                theirs = fields.get(other.encode())
                assert theirs is None or int(theirs) in range(20), (k, fields)
            assert r.mget(keys[:3]) == [None, None, None]
    except Exception as e:  # reported by the main thread
        errors.append(f"{protocol}: {e!r}")


threads = [
    threading.Thread(target=worker, args=(2, "resp2", "resp3")),
    threading.Thread(target=worker, args=(3, "resp3", "resp2")),
]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
final = redis.Redis(host=host, port=port).hgetall(keys[-1])
assert final == {b"resp2": b"19", b"resp3": b"19"}, final
print("ALL OK")
