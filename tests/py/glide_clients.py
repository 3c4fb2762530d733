"""valkey-glide (standalone GlideClient) through Puerta, with its default configuration (RESP3) or
RESP2 forced: the checks every client in the RESP3 suite runs. Glide delivers pub/sub only over
RESP3 (its own rule), so the RESP2 run skips that one check.

usage: glide_clients.py HOST PORT default|resp2
"""
import asyncio
import sys
import uuid

from glide import (
    Batch,
    GlideClient,
    GlideClientConfiguration,
    NodeAddress,
    ProtocolVersion,
)

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
run = uuid.uuid4().hex[:8]


def key(name):
    return f"glide:{mode}:{run}:{name}"


def config(**extra):
    if mode == "resp2":
        extra["protocol"] = ProtocolVersion.RESP2
    return GlideClientConfiguration([NodeAddress(host, port)], request_timeout=30000, **extra)


async def pubsub_round_trip(client):
    channel = key("chan")
    modes = GlideClientConfiguration.PubSubChannelModes
    subs = GlideClientConfiguration.PubSubSubscriptions({modes.Exact: {channel}}, None, None)
    subscriber = await GlideClient.create(config(pubsub_subscriptions=subs))
    for _ in range(100):
        await client.publish("hello", channel)
        message = subscriber.try_get_pubsub_message()
        if message is None:
            await asyncio.sleep(0.05)
            message = subscriber.try_get_pubsub_message()
        if message is not None:
            assert message.message == b"hello" and message.channel == channel.encode(), message
            break
    else:
        raise AssertionError("no message")
    await subscriber.close()


async def main():
    client = await GlideClient.create(config())
    hello = await client.custom_command(["HELLO"])
    assert hello[b"proto"] == (2 if mode == "resp2" else 3), hello
    assert await client.set(key("a"), "1") == "OK" and await client.get(key("a")) == b"1"
    many = {key(f"m{i}"): f"v{i}" for i in range(50)}
    assert await client.mset(many) == "OK"
    assert await client.mget(list(many) + [key("missing")]) == [v.encode() for v in many.values()] + [None]
    await client.hset(key("h"), {"f1": "x", "f2": "y"})
    assert await client.hgetall(key("h")) == {b"f1": b"x", b"f2": b"y"}
    await client.zadd(key("z"), {"m": 2.5})
    score = await client.zscore(key("z"), "m")
    assert isinstance(score, float) and score == 2.5, score
    pipeline = Batch(is_atomic=False)
    for _ in range(1000):
        pipeline.incr(key("counter"))
    assert await client.exec(pipeline, raise_on_error=True) == list(range(1, 1001))
    tx = Batch(is_atomic=True)
    tx.set(key("{tx}a"), "5").incrby(key("{tx}a"), 2).get(key("{tx}a"))
    assert await client.exec(tx, raise_on_error=True) == ["OK", 7, b"7"]
    if mode != "resp2":
        await pubsub_round_trip(client)
    found, cursor = set(), "0"
    while True:
        cursor, keys = await client.scan(cursor, match=key("*"), count=100)
        found.update(keys)
        if cursor in (b"0", "0"):
            break
    written = {key("a"), key("h"), key("z"), key("counter"), key("{tx}a")} | set(many)
    assert found == {k.encode() for k in written}, len(found)
    await client.close()
    print("ALL OK")


asyncio.run(main())
