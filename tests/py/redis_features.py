"""Transactions, blocking commands, pub/sub, SCAN and proxy-answered commands through Puerta with a
plain redis-py client.

usage: redis_features.py HOST PORT
"""
import sys
import threading
import time

import redis

host, port = sys.argv[1], int(sys.argv[2])


def client():
    return redis.Redis(host=host, port=port, protocol=2, socket_timeout=60)


r = client()


def transactions():
    p = r.pipeline(transaction=True)
    p.set("{tx}a", 1).incr("{tx}a").lpush("{tx}l", "x").get("{tx}a")
    assert p.execute() == [True, 2, 1, b"2"]
    # Keys in different slots inside MULTI: refused, nothing applied.
    p = r.pipeline(transaction=True)
    p.set("tx-a", 1).set("tx-b", 2)
    try:
        p.execute()
        raise AssertionError("cross-slot MULTI must fail")
    except redis.exceptions.ResponseError as e:
        assert "slot" in str(e).lower(), str(e)
    assert r.get("tx-a") is None and r.get("tx-b") is None
    # WATCH: a concurrent change aborts the transaction.
    other = client()
    r.set("{w}k", "1")
    with r.pipeline() as p:
        p.watch("{w}k")
        assert p.get("{w}k") == b"1"
        other.set("{w}k", "changed")
        p.multi()
        p.set("{w}k", "mine")
        try:
            p.execute()
            raise AssertionError("WATCH must abort")
        except redis.exceptions.WatchError:
            pass
    assert r.get("{w}k") == b"changed"
    # WATCH without interference commits.
    with r.pipeline() as p:
        p.watch("{w}k")
        p.multi()
        p.set("{w}k", "mine")
        assert p.execute() == [True]
    assert r.get("{w}k") == b"mine"
    print("transactions ok")


def blocking():
    r.delete("{b}list")
    got = []

    def waiter():
        got.append(client().blpop(["{b}list"], timeout=30))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    # Other traffic is not held up by the blocked client.
    for i in range(50):
        assert r.set(f"nb:{i}", i) is True
    r.rpush("{b}list", "item")
    t.join(60)
    assert got == [(b"{b}list", b"item")], got
    assert client().blpop(["{b}empty"], timeout=1) is None
    r.rpush("{b}src", "m")
    assert r.blmove("{b}src", "{b}dst", 5, "LEFT", "RIGHT") == b"m"
    r.xadd("{b}stream", {"f": "v"})
    res = r.xread({"{b}stream": "0"}, block=1000)
    assert res and res[0][0] == b"{b}stream", res
    print("blocking ok")


def pubsub():
    p = r.pubsub()
    p.subscribe("news")
    assert p.get_message(timeout=10)["type"] == "subscribe"
    p.psubscribe("sport.*")
    assert p.get_message(timeout=10)["type"] == "psubscribe"
    # PUBLISH reaches subscribers on every node of the cluster (its count is per node, so it is not
    # checked); publish until the message arrives.
    def receive(kind, publish):
        deadline = time.time() + 30
        while time.time() < deadline:
            publish()
            msg = p.get_message(timeout=1)
            while msg:
                if msg["type"] == kind:
                    return msg
                msg = p.get_message(timeout=0.2)
        raise AssertionError(f"no {kind}")

    assert receive("message", lambda: r.publish("news", "hello"))["data"] == b"hello"
    assert receive("pmessage", lambda: r.publish("sport.tennis", "ace"))["data"] == b"ace"
    while p.get_message(timeout=0.5):
        pass
    p.unsubscribe("news")
    p.punsubscribe("sport.*")
    kinds = [p.get_message(timeout=10)["type"] for _ in range(2)]
    assert sorted(kinds) == ["punsubscribe", "unsubscribe"], kinds
    # Shard channels live on the slot's master.
    s = r.pubsub()
    s.ssubscribe("orders")
    assert s.get_message(timeout=10)["type"] == "ssubscribe"
    assert r.spublish("orders", "o1") == 1
    msg = s.get_message(timeout=10)
    assert msg["type"] == "smessage" and msg["data"] == b"o1", msg
    s.sunsubscribe("orders")
    p.close()
    s.close()
    # A connection that left pub/sub mode serves normal commands again.
    c = redis.Redis(host=host, port=port, protocol=2, single_connection_client=True)
    c.execute_command("SUBSCRIBE", "x")
    c.execute_command("UNSUBSCRIBE", "x")
    assert c.set("after-pubsub", "1") is True and c.get("after-pubsub") == b"1"
    print("pubsub ok")


def scan_and_fanout():
    keys = {f"scan:{i}".encode() for i in range(300)}
    r.mset({k: b"1" for k in keys})
    seen = set(r.scan_iter(match="scan:*", count=50))
    assert seen == keys, len(seen)
    assert set(r.keys("scan:*")) == keys
    assert r.dbsize() >= 300
    info = r.info()
    assert info["db0"]["keys"] >= 300, info.get("db0")
    assert "moved_redirects" in r.info("proxy")
    print("scan/keys/dbsize/info ok")


def local_commands():
    assert r.ping() is True
    assert r.echo("hi") == b"hi"
    assert r.execute_command("SELECT", 0) in (True, b"OK")
    try:
        r.execute_command("SELECT", 1)
        raise AssertionError("SELECT 1 must fail")
    except redis.exceptions.ResponseError as e:
        assert "cluster" in str(e).lower()
    assert r.command_count() > 100
    assert r.config_get("maxmemory")
    try:
        r.config_set("maxmemory", "1")
        raise AssertionError("CONFIG SET must be refused")
    except redis.exceptions.ResponseError as e:
        assert "admin_commands" in str(e)
    try:
        r.execute_command("NOSUCHCOMMAND", "x")
        raise AssertionError("unknown command must fail")
    except redis.exceptions.ResponseError as e:
        assert "unknown command" in str(e)
    c = redis.Redis(host=host, port=port, protocol=2, single_connection_client=True)
    c.client_setname("me")
    assert c.client_getname() == "me" or c.client_getname() == b"me"
    assert r.eval("return redis.call('set', KEYS[1], ARGV[1])", 1, "ev", "x") == b"OK"
    assert r.get("ev") == b"x"
    try:
        r.execute_command("CLUSTER", "KEYSLOT", "{user1000}.following")
        raise AssertionError("CLUSTER must be refused: the proxy is one standalone server")
    except redis.exceptions.ResponseError as e:
        assert "cluster support disabled" in str(e)
    print("local ok")


transactions()
blocking()
pubsub()
scan_and_fanout()
local_commands()
print("ALL OK")
