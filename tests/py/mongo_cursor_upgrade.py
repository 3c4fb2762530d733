"""A cursor that outlives Puerta upgrades: opens a cursor through Puerta, reads its first batch,
waits until GOFILE exists (the test upgrades Puerta meanwhile), then reads the rest with getMores.
The pool has one connection and is watched: if the upgrade broke the connection (or the driver's
monitoring connection, which clears the pool), the counts say so even when a retry would hide it.

  mongo_cursor_upgrade.py HOST:PORT GOFILE
"""
import os
import sys
import time

import pymongo
from pymongo import monitoring

DOCS = 500
BATCH = 50


class PoolCounter(monitoring.ConnectionPoolListener):
    def __init__(self):
        self.created = 0
        self.closed = 0
        self.cleared = 0

    def connection_created(self, event):
        self.created += 1

    def connection_closed(self, event):
        self.closed += 1

    def pool_cleared(self, event):
        self.cleared += 1

    def _ignored(self, event):
        pass

    # The listener interface has no defaults; the rest of its events tell nothing here.
    pool_created = pool_ready = pool_closed = connection_ready = _ignored
    connection_check_out_started = connection_check_out_failed = _ignored
    connection_checked_out = connection_checked_in = _ignored


def main(address, go):
    host, port = address.rsplit(":", 1)
    pool = PoolCounter()
    client = pymongo.MongoClient(
        host,
        int(port),
        directConnection=True,
        maxPoolSize=1,
        retryReads=False,
        retryWrites=False,
        serverSelectionTimeoutMS=30000,
        event_listeners=[pool],
    )
    coll = client.puerta_test.upgrade
    coll.drop()
    coll.insert_many([{"_id": i, "pad": "x" * 1000} for i in range(DOCS)])
    cursor = coll.find({}).sort("_id", 1).batch_size(BATCH)
    ids = [next(cursor)["_id"] for _ in range(BATCH)]
    print(f"OPENED created={pool.created}", flush=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("no go file")
        time.sleep(0.05)
    ids += [doc["_id"] for doc in cursor]
    if ids != list(range(DOCS)):
        sys.exit(f"cursor returned {len(ids)} documents, not 0..{DOCS}")
    print(
        f"DONE created={pool.created} closed={pool.closed} cleared={pool.cleared}",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
