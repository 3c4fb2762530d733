// node-redis 6 client-side caching (RESP3, clientSideCache) through Puerta: repeated reads are cache
// hits, and another client's write invalidates the key so the next read sees the new value.
// usage: node node_redis_cache.mjs HOST PORT
import { createClient } from "redis";
import assert from "node:assert/strict";

const [host, port] = process.argv.slice(2);
const socket = { host, port: Number(port), reconnectStrategy: false };
const cached = createClient({ socket, RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } });
const writer = createClient({ socket });
for (const c of [cached, writer]) {
  c.on("error", (e) => {
    console.error("client error", e);
    process.exit(1);
  });
  await c.connect();
}
const csc = cached.clientSideCache;
// One key per master of a 3-master cluster (slots 3300, 7365, 15495).
const keys = ["b", "c", "a"];
for (const k of keys) await writer.set(k, `${k}-1`);
for (const k of keys) assert.equal(await cached.get(k), `${k}-1`);
for (let i = 0; i < 20; i++) for (const k of keys) assert.equal(await cached.get(k), `${k}-1`);
assert.ok(csc.stats().hitCount >= 60, `hits: ${csc.stats().hitCount}`);

for (const k of keys) await writer.set(k, `${k}-2`);
const deadline = Date.now() + 10000;
for (;;) {
  const values = await Promise.all(keys.map((k) => cached.get(k)));
  if (values.every((v, i) => v === `${keys[i]}-2`)) break;
  assert.ok(Date.now() < deadline, `stale values after writes: ${values}`);
  await new Promise((r) => setTimeout(r, 50));
}
await cached.quit();
await writer.quit();
console.log("ALL OK");
