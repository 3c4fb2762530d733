"""redis-py (plain client, not RedisCluster) through Puerta: the cluster must look like one server.

usage: redis_basic.py HOST PORT
"""
import random
import string
import sys

import redis
from redis.crc import key_slot

host, port = sys.argv[1], int(sys.argv[2])
# RESP2 forced; redis_resp3.py covers redis-py's default (RESP3).
r = redis.Redis(host=host, port=port, protocol=2, socket_timeout=60)


def rand_key(prefix):
    return prefix + "".join(random.choices(string.ascii_letters + string.digits, k=12))


def set_get_10k():
    expected = {}
    for i in range(10_000):
        k = rand_key("k:")
        v = f"v{i}-" + "".join(random.choices(string.ascii_letters, k=random.randint(0, 40)))
        assert r.set(k, v) is True
        expected[k] = v.encode()
    for k, v in expected.items():
        got = r.get(k)
        assert got == v, f"GET {k}: {got!r} != {v!r}"
    print("set/get 10k ok")


def mget_mset_100():
    keys = [f"multi:{i}" for i in range(100)]
    slots = {key_slot(k.encode()) for k in keys}
    assert len(slots) > 50, "keys should spread over many slots"
    mapping = {k: f"val-{k}" for k in keys}
    assert r.mset(mapping) is True
    values = r.mget(keys)
    assert values == [mapping[k].encode() for k in keys], values
    mixed = keys[:10] + ["multi:missing"] + keys[10:20]
    values = r.mget(mixed)
    assert values[10] is None and values[:10] == [mapping[k].encode() for k in keys[:10]]
    assert r.exists(*keys, "multi:missing") == 100
    assert r.exists(keys[0], keys[0]) == 2
    assert r.delete(*keys[:50], "multi:missing") == 50
    assert r.exists(*keys) == 50
    assert r.unlink(*keys[50:]) == 50
    assert r.mget(keys[:3]) == [None, None, None]
    print("mget/mset 100 ok")


def pipelines_keep_order():
    for round_ in range(3):
        p = r.pipeline(transaction=False)
        expected = []
        for i in range(1000):
            k = f"pipe:{round_}:{i % 97}"
            op = i % 5
            if op == 0:
                p.set(k, i)
                expected.append(True)
            elif op == 1:
                p.incr(f"pipe:ctr:{round_}")
                expected.append(("incr",))
            elif op == 2:
                p.echo(f"e{i}")
                expected.append(f"e{i}".encode())
            elif op == 3:
                p.rpush(f"pipe:list:{round_}:{i % 7}", i)
                expected.append(("rpush",))
            else:
                p.ping()
                expected.append(True)
        results = p.execute()
        assert len(results) == 1000
        counter = 0
        pushes = {}
        for i, (res, exp) in enumerate(zip(results, expected)):
            if exp == ("incr",):
                counter += 1
                assert res == counter, (i, res, counter)
            elif exp == ("rpush",):
                lk = i % 7
                pushes[lk] = pushes.get(lk, 0) + 1
                assert res == pushes[lk], (i, res, pushes[lk])
            else:
                assert res == exp, (i, res, exp)
        # Values written in the pipeline are the last ones written per key, in order.
        last = {}
        for i in range(1000):
            if i % 5 == 0:
                last[f"pipe:{round_}:{i % 97}"] = str(i).encode()
        for k, v in last.items():
            assert r.get(k) == v
    print("pipelines ok")


set_get_10k()
mget_mset_100()
pipelines_keep_order()
print("ALL OK")
