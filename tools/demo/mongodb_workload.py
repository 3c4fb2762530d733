"""Demo workload for `cargo xtask demo mongodb`: pymongo clients through Puerta.

Each simulated client uses its own loopback source address (127.0.0.2, 127.0.0.3, ...), because Puerta
places and pins clients by IP. Every client opens several separate MongoClients (new TCP connections),
writes documents tagged with its address and reads them all back with a small batch size (find +
getMores). The mongos stand-ins do not share data, so this only works if every connection of a client
lands on the same backend. At the end we ask each backend directly whose documents it holds.
"""

import argparse
import multiprocessing
import pathlib
import queue
import sys

import pymongo

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from loopback_source import bind_source  # noqa: E402  (tools/ is not a package)

CONNECTIONS_PER_CLIENT = 3
DOCS_PER_CONNECTION = 100


def client(source, puerta, results):
    bind_source(source)
    total = 0
    for n in range(CONNECTIONS_PER_CLIENT):
        with pymongo.MongoClient(f"mongodb://{puerta}/", serverSelectionTimeoutMS=10000) as mc:
            people = mc.demo.people
            people.insert_many(
                [{"client": source, "conn": n, "i": i} for i in range(DOCS_PER_CONNECTION)]
            )
            total = sum(1 for _ in people.find({"client": source}).batch_size(50))
    results.put((source, total))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--puerta", required=True)
    parser.add_argument("--backends", required=True, help="comma-separated ports")
    parser.add_argument("--clients", type=int, default=6)
    args = parser.parse_args()
    backends = [int(p) for p in args.backends.split(",")]
    sources = [f"127.0.0.{i + 2}" for i in range(args.clients)]

    print(f"{len(sources)} clients, each {CONNECTIONS_PER_CLIENT} connections x "
          f"{DOCS_PER_CONNECTION} inserts through Puerta at {args.puerta}, then a find(batch_size=50)")
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client, args=(s, args.puerta, results)) for s in sources]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    seen = {}
    for _ in procs:
        try:
            source, total = results.get(timeout=5)
        except queue.Empty:
            break
        seen[source] = total
    expected = CONNECTIONS_PER_CLIENT * DOCS_PER_CONNECTION
    ok = True
    for s in sources:
        got = seen.get(s)
        status = "ok" if got == expected else "WRONG"
        ok &= got == expected
        print(f"  client {s}: read back {got}/{expected} of its documents through Puerta [{status}]")

    print("Where the documents are (asking each backend directly):")
    for port in backends:
        with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", directConnection=True) as mc:
            per_client = {
                row["_id"]: row["n"]
                for row in mc.demo.people.aggregate(
                    [{"$group": {"_id": "$client", "n": {"$sum": 1}}}]
                )
            }
        listing = ", ".join(f"{c}={n}" for c, n in sorted(per_client.items())) or "nothing"
        print(f"  backend 127.0.0.1:{port}: {listing}")
    print("Each client's documents sit on exactly one backend (affinity); new clients are spread "
          "round-robin over the healthy backends.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
