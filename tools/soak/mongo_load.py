"""Soak load for Puerta's MongoDB mode: one simulated client (one loopback source address).

Runs until killed. Each cycle inserts a batch of documents, reads them back through a cursor with a
small batch size (find + getMores) and deletes them, so the data stays small. Every few cycles the
MongoClient is closed and a new one opened: connection churn through the proxy is what would show a
descriptor or memory leak. Any exception is counted as an error and followed by a fresh MongoClient.
"""

import argparse
import pathlib
import sys
import time

import pymongo

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from loopback_source import bind_source  # noqa: E402  (tools/ is not a package)

from soakstats import Pace, Stats

DOCS_PER_CYCLE = 20
BATCH_SIZE = 6


def new_client(puerta):
    return pymongo.MongoClient(
        f"mongodb://{puerta}/",
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=2000,
        socketTimeoutMS=5000,
        retryWrites=False,
        retryReads=False,
        maxPoolSize=2,
    )


def cycle(coll, tag, n, stats):
    docs = [{"tag": tag, "cycle": n, "i": i, "pad": "x" * 64} for i in range(DOCS_PER_CYCLE)]
    coll.insert_many(docs)
    stats.op()
    seen = 0
    for _ in coll.find({"tag": tag, "cycle": n}).batch_size(BATCH_SIZE):
        seen += 1
    stats.op(1 + (DOCS_PER_CYCLE + BATCH_SIZE - 1) // BATCH_SIZE)
    coll.delete_many({"tag": tag, "cycle": n})
    stats.op()
    if seen != DOCS_PER_CYCLE:
        stats.mismatch()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--puerta", required=True)
    parser.add_argument("--source", required=True, help="loopback source address, e.g. 127.0.0.2")
    parser.add_argument("--stats", required=True)
    parser.add_argument("--rate", type=float, default=4.0, help="cycles per second")
    parser.add_argument("--cycles-per-connection", type=int, default=8)
    args = parser.parse_args()
    bind_source(args.source)
    stats = Stats(args.stats)
    stats.write()
    pace = Pace(args.rate)
    n = 0
    while True:
        client = None
        try:
            client = new_client(args.puerta)
            stats.connected()
            coll = client.soak[f"load_{args.source.replace('.', '_')}"]
            for _ in range(args.cycles_per_connection):
                n += 1
                cycle(coll, args.source, n, stats)
                stats.maybe_write()
                pace.tick()
        except Exception as exc:  # noqa: BLE001 - every failure is a counted client error
            stats.error(exc)
            stats.maybe_write()
            time.sleep(0.5)
        finally:
            if client is not None:
                client.close()


if __name__ == "__main__":
    main()
