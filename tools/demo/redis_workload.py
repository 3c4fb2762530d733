"""Demo workload for `cargo xtask demo redis`: redis-py as a plain (non-cluster) client through Puerta.

Shows: keys routed to the master that owns their slot; a cross-slot MGET answered as one command; and a
live slot migration (CLUSTER SETSLOT IMPORTING/MIGRATING + MIGRATE, then SETSLOT NODE) during which
Puerta absorbs the ASK and MOVED redirects so that the client never sees them.
"""

import argparse
import sys

import redis


def slot_owners(node):
    """{(start, end): port} of the masters, from CLUSTER SLOTS."""
    owners = {}
    for entry in node.execute_command("CLUSTER", "SLOTS"):
        start, end, master = entry[0], entry[1], entry[2]
        owners[(int(start), int(end))] = int(master[1])
    return owners


def owner_of(node, slot):
    for (start, end), port in slot_owners(node).items():
        if start <= slot <= end:
            return port
    raise RuntimeError(f"slot {slot} has no owner")


def routing(front, admin):
    print("Slot routing (written through Puerta, read back directly from the owning master):")
    keys = [f"user:{i}" for i in range(1, 7)]
    for key in keys:
        front.set(key, f"value-of-{key}")
        slot = admin.execute_command("CLUSTER", "KEYSLOT", key)
        port = owner_of(admin, slot)
        stored = redis.Redis(port=port, decode_responses=True).get(key)
        print(f"  SET {key:7} -> slot {slot:5} -> master :{port}  (direct GET there: {stored!r})")
    values = front.mget(keys)
    assert values == [f"value-of-{k}" for k in keys], values
    print(f"  MGET over {len(keys)} keys in different slots through Puerta: {len(values)} values, in order")


def migrate(front, admin):
    slot = admin.execute_command("CLUSTER", "KEYSLOT", "{demo}")
    source_port = owner_of(admin, slot)
    masters = sorted(set(slot_owners(admin).values()))
    target_port = next(p for p in masters if p != source_port)
    source = redis.Redis(port=source_port, decode_responses=True)
    target = redis.Redis(port=target_port, decode_responses=True)
    source_id = source.execute_command("CLUSTER", "MYID")
    target_id = target.execute_command("CLUSTER", "MYID")
    print(f"Live migration of slot {slot} (keys {{demo}}:*) from :{source_port} to :{target_port}:")

    front.set("{demo}:a", "A")
    front.set("{demo}:b", "B")
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    source.execute_command("MIGRATE", "127.0.0.1", target_port, "{demo}:a", 0, 5000)
    print("  {demo}:a moved, {demo}:b not yet; the slot is MIGRATING/IMPORTING")
    try:
        source.get("{demo}:a")
        print("  (direct GET {demo}:a on the old owner unexpectedly succeeded)")
    except redis.exceptions.ResponseError as e:
        kind = "ASK" if isinstance(e, redis.exceptions.AskError) else type(e).__name__
        print(f"  direct GET {{demo}}:a on the old owner answers: -{kind} {e}")
    print(f"  GET {{demo}}:a through Puerta: {front.get('{demo}:a')!r}  (ASK followed by Puerta)")
    print(f"  GET {{demo}}:b through Puerta: {front.get('{demo}:b')!r}  (still on the old owner)")

    source.execute_command("MIGRATE", "127.0.0.1", target_port, "{demo}:b", 0, 5000)
    for port in [target_port, source_port] + [p for p in masters if p not in (source_port, target_port)]:
        redis.Redis(port=port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    print(f"  migration finished: slot {slot} now belongs to :{target_port}")
    values = [front.get("{demo}:a"), front.get("{demo}:b")]
    print(f"  GET both through Puerta: {values}  (MOVED absorbed, slot map updated)")
    assert values == ["A", "B"], values
    front.set("{demo}:c", "C")
    direct = target.get("{demo}:c")
    print(f"  SET {{demo}}:c through Puerta lands on the new owner: direct GET there = {direct!r}")
    assert direct == "C"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--puerta", required=True)
    parser.add_argument("--nodes", required=True, help="comma-separated ports")
    args = parser.parse_args()
    host, port = args.puerta.rsplit(":", 1)
    # redis-py 8's defaults: RESP3 (HELLO 3), which Puerta speaks as well as RESP2.
    front = redis.Redis(host=host, port=int(port), decode_responses=True, socket_timeout=10)
    admin = redis.Redis(port=int(args.nodes.split(",")[0]), decode_responses=True)
    print(f"PING through Puerta at {args.puerta}: {front.ping()}")
    routing(front, admin)
    migrate(front, admin)
    stats = front.info("proxy")
    counters = {k: stats[k] for k in ("moved_redirects", "ask_redirects") if k in stats}
    if counters:
        print(f"Puerta's INFO proxy: {counters}  (redirects absorbed, none shown to the client)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
