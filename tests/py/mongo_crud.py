"""pymongo through Puerta: insert 1000 documents from several threads (so the driver opens several
pooled connections), then read them back with batch_size=100: one find and nine getMores, which only
work if every connection of this client reaches the same mongos (cursors live on one server).

  mongo_crud.py HOST:PORT
"""
import sys
import threading

import pymongo
from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()

    def started(self, event):
        with self.lock:
            self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def main(address):
    host, port = address.rsplit(":", 1)
    counter = CommandCounter()
    client = pymongo.MongoClient(
        host,
        int(port),
        directConnection=True,
        serverSelectionTimeoutMS=30000,
        maxPoolSize=8,
        event_listeners=[counter],
    )
    coll = client.puerta_test.crud
    coll.drop()
    errors = []

    def insert(part):
        try:
            coll.insert_many([{"_id": i, "part": part, "pad": "x" * 100} for i in range(part * 100, part * 100 + 100)])
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=insert, args=(p,)) for p in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"insert failed: {errors[0]!r}")

    before = dict(counter.counts)
    docs = list(coll.find({}).sort("_id", 1).batch_size(100))
    ids = [d["_id"] for d in docs]
    if ids != list(range(1000)):
        sys.exit(f"find returned {len(ids)} documents, expected 0..999")
    get_mores = counter.counts.get("getMore", 0) - before.get("getMore", 0)
    finds = counter.counts.get("find", 0) - before.get("find", 0)
    # 9 getMores fetch documents 100..999; a server may need one more (empty) to learn the cursor ended.
    if finds != 1 or get_mores not in (9, 10):
        sys.exit(f"expected 1 find + 9 (or 10) getMore, saw {finds} + {get_mores}")
    print(f"OK 1000 documents, {finds} find + {get_mores} getMore", flush=True)
    client.close()


if __name__ == "__main__":
    main(sys.argv[1])
