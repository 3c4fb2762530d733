"""Soak load for Puerta's Redis mode: a few connections (threads) sending pipelines, until killed.

Each cycle is one non-transactional pipeline: SET and GET of one key, MSET and MGET of four keys that
span slots (Puerta splits and merges them). A GET or MGET that does not return what was just written is
counted as a mismatch. Every few cycles the connection is closed and a new one opened (connection
churn). redis-py's own retries are off, so every failure is seen and counted.
"""

import argparse
import random
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from soakstats import Pace, Stats


def new_client(host, port):
    return redis.Redis(
        host=host,
        port=port,
        # RESP2, as in the soak runs recorded before Puerta spoke RESP3, so they stay comparable.
        protocol=2,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


def cycle(client, worker, n, stats):
    key = f"soak:{worker}:{n % 1000}"
    value = f"{n}-{random.random()}".encode()
    many = {f"soak:{worker}:m{(n + i) % 1000}": value for i in range(4)}
    pipe = client.pipeline(transaction=False)
    pipe.set(key, value)
    pipe.get(key)
    pipe.mset(many)
    pipe.mget(list(many))
    replies = pipe.execute()
    stats.op(4)
    if replies[1] != value or replies[3] != [value] * len(many):
        stats.mismatch()


def worker(args, index, stats):
    host, port = args.puerta.rsplit(":", 1)
    pace = Pace(args.rate)
    n = 0
    while True:
        client = None
        try:
            client = new_client(host, int(port))
            client.ping()
            stats.connected()
            for _ in range(args.cycles_per_connection):
                n += 1
                cycle(client, f"{args.name}-{index}", n, stats)
                pace.tick()
        except Exception as exc:  # noqa: BLE001 - every failure is a counted client error
            stats.error(exc)
            time.sleep(0.2)
        finally:
            if client is not None:
                client.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--puerta", required=True)
    parser.add_argument("--name", required=True, help="key prefix of this client process")
    parser.add_argument("--stats", required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=40.0, help="pipelines per second per connection")
    parser.add_argument("--cycles-per-connection", type=int, default=100)
    args = parser.parse_args()
    stats = Stats(args.stats)
    stats.write()
    for i in range(args.connections):
        threading.Thread(target=worker, args=(args, i, stats), daemon=True).start()
    while True:
        time.sleep(1.0)
        stats.write()


if __name__ == "__main__":
    main()
