"""redis-py 8 (sync and asyncio) through Puerta, with its default constructor (RESP3) or with RESP2
forced: the checks every client in the RESP3 suite runs.

usage: redis_clients.py HOST PORT default|resp2
"""
import asyncio
import sys
import uuid

import redis
import redis.asyncio

import tls_env

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kwargs = {"protocol": 2} if mode == "resp2" else {}
kwargs.update(tls_env.redis_py_kwargs())
expected_proto = 2 if mode == "resp2" else 3
run = uuid.uuid4().hex[:8]


def key(name):
    return f"py:{mode}:{run}:{name}"


def check_hello(hello):
    # RESP3: a map (keys as str); RESP2: the same fields as a flat list.
    pairs = zip(hello[::2], hello[1::2]) if isinstance(hello, list) else hello.items()
    hello = {k.decode() if isinstance(k, bytes) else k: v for k, v in pairs}
    assert hello["proto"] == expected_proto and hello["mode"] in (b"standalone", "standalone"), hello


def sync_checks():
    r = redis.Redis(host=host, port=port, socket_timeout=60, **kwargs)
    check_hello(r.execute_command("HELLO"))
    assert r.set(key("a"), "1") is True and r.get(key("a")) == b"1"
    many = {key(f"m{i}"): f"v{i}" for i in range(50)}
    assert r.mset(many) is True
    assert r.mget(list(many) + [key("missing")]) == [v.encode() for v in many.values()] + [None]
    r.hset(key("h"), mapping={"f1": "x", "f2": "y"})
    assert r.hgetall(key("h")) == {b"f1": b"x", b"f2": b"y"}
    r.zadd(key("z"), {"member": 2.5})
    score = r.zscore(key("z"), "member")
    assert isinstance(score, float) and score == 2.5, score
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.set(key(f"p{i}"), i)
        pipe.get(key(f"p{i}"))
    replies = pipe.execute()
    assert replies == [x for i in range(500) for x in (True, str(i).encode())], replies[:6]
    with r.pipeline(transaction=True) as tx:
        tx.set(key("{tx}a"), 1).incr(key("{tx}a")).get(key("{tx}a"))
        assert tx.execute() == [True, 2, b"2"]
    pubsub_round_trip(r)
    found = set(r.scan_iter(match=key("*"), count=100))
    written = {key("a"), key("h"), key("z"), key("{tx}a")} | set(many) | {key(f"p{i}") for i in range(500)}
    assert found == {k.encode() for k in written}, len(found)
    r.close()
    print("sync ok")


def pubsub_round_trip(r):
    p = r.pubsub()
    channel = key("chan")
    p.subscribe(channel)
    confirmation = p.get_message(timeout=10)
    assert confirmation["type"] == "subscribe", confirmation
    for _ in range(100):
        r.publish(channel, "hello")
        message = p.get_message(timeout=0.5)
        if message:
            assert message["type"] == "message" and message["data"] == b"hello", message
            break
    else:
        raise AssertionError("no message")
    p.unsubscribe(channel)
    p.close()


async def async_checks():
    r = redis.asyncio.Redis(host=host, port=port, socket_timeout=60, **kwargs)
    check_hello(await r.execute_command("HELLO"))
    assert await r.set(key("async"), "1") is True and await r.get(key("async")) == b"1"
    many = {key(f"am{i}"): f"v{i}" for i in range(50)}
    assert await r.mset(many) is True
    assert await r.mget(list(many)) == [v.encode() for v in many.values()]
    await r.hset(key("ah"), mapping={"f": "v"})
    assert await r.hgetall(key("ah")) == {b"f": b"v"}
    await r.zadd(key("az"), {"m": 0.5})
    assert await r.zscore(key("az"), "m") == 0.5
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.incr(key("counter"))
    assert await pipe.execute() == list(range(1, 1001))
    async with r.pipeline(transaction=True) as tx:
        tx.set(key("{atx}a"), 5).incrby(key("{atx}a"), 2)
        assert await tx.execute() == [True, 7]
    p = r.pubsub()
    await p.subscribe(key("achan"))
    assert (await p.get_message(timeout=10))["type"] == "subscribe"
    for _ in range(100):
        await r.publish(key("achan"), "hi")
        message = await p.get_message(timeout=0.5)
        if message:
            assert message["data"] == b"hi", message
            break
    else:
        raise AssertionError("no async message")
    await p.unsubscribe(key("achan"))
    await p.aclose()
    found = {k async for k in r.scan_iter(match=key("a*"), count=100)}
    assert {key(f"am{i}").encode() for i in range(50)} <= found, len(found)
    await r.aclose()
    print("asyncio ok")


sync_checks()
asyncio.run(async_checks())
print("ALL OK")
