"""Client-side caching through Puerta: redis-py 8 with cache_config (RESP3, CLIENT TRACKING ON) serves
repeated reads from its cache, and another client's write invalidates exactly the key it wrote.

usage: redis_tracking.py HOST PORT
"""
import sys
import time

import redis
from redis.cache import CacheConfig
from redis.connection import CacheProxyConnection

# redis-py enables cache_config only for servers announcing 7.4 or later; Puerta announces its nodes'
# version (Debian's 7.0.15 here), and its caching needs only BCAST tracking on the nodes (Redis 6+).
# Lowering redis-py's gate runs its real caching and invalidation code against the proxy.
CacheProxyConnection.MIN_ALLOWED_VERSION = "7.0.0"

host, port = sys.argv[1], int(sys.argv[2])
cached = redis.Redis(host=host, port=port, protocol=3, cache_config=CacheConfig(), socket_timeout=30)
writer = redis.Redis(host=host, port=port, protocol=2, socket_timeout=30)
cache = cached.get_cache()

# Keys on each of the three masters (slots 3300, 7365, 15495) and one never rewritten.
keys = ["b", "c", "a"]
for k in keys + ["steady"]:
    writer.set(k, f"{k}-1")
for k in keys + ["steady"]:
    assert cached.get(k) == f"{k}-1".encode(), k
assert cache.size == 4, f"cached {cache.size} entries"
# Served from the cache now: the proxy's command count does not move.
before = writer.info("stats")["total_commands_processed"]
for _ in range(50):
    for k in keys + ["steady"]:
        assert cached.get(k) == f"{k}-1".encode()
after = writer.info("stats")["total_commands_processed"]
assert after - before <= 2, f"{after - before} commands reached the proxy for cached reads"

for k in keys:
    writer.set(k, f"{k}-2")
# The invalidation is a push on the cached client's connection; redis-py reads it before answering
# from its cache. Each key must show its new value soon, the untouched one stays cached.
deadline = time.time() + 10
while True:
    values = [cached.get(k) for k in keys]
    if values == [f"{k}-2".encode() for k in keys]:
        break
    assert time.time() < deadline, f"stale values after writes: {values}"
    time.sleep(0.05)
assert cached.get("steady") == b"steady-1"
info = writer.info("clients")
assert info["tracking_clients"] >= 1, info
print("ALL OK")
