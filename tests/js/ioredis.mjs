// ioredis 6 through Puerta, with its default constructor or RESP2 forced: the checks every client in
// the RESP3 suite runs.
// usage: node ioredis.mjs HOST PORT default|resp2
import Redis from "ioredis";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

const [host, port, mode] = process.argv.slice(2);
const options = { host, port: Number(port), maxRetriesPerRequest: 1, retryStrategy: () => null };
if (mode === "resp2") options.protocol = 2;
const run = randomUUID().slice(0, 8);
const key = (name) => `ioredis:${mode}:${run}:${name}`;

const client = new Redis(options);
client.on("error", (e) => {
  console.error("client error", e);
  process.exit(1);
});

const hello = await client.call("HELLO");
assert.equal(hello[hello.indexOf("proto") + 1], mode === "resp2" ? 2 : 3);
assert.equal(await client.set(key("a"), "1"), "OK");
assert.equal(await client.get(key("a")), "1");
const many = Object.fromEntries([...Array(50).keys()].map((i) => [key(`m${i}`), `v${i}`]));
assert.equal(await client.mset(many), "OK");
assert.deepEqual(await client.mget([...Object.keys(many), key("missing")]), [...Object.values(many), null]);
await client.hset(key("h"), { f1: "x", f2: "y" });
assert.deepEqual(await client.hgetall(key("h")), { f1: "x", f2: "y" });
await client.zadd(key("z"), 2.5, "m");
assert.equal(Number(await client.zscore(key("z"), "m")), 2.5);

const pipeline = client.pipeline();
for (let i = 0; i < 1000; i++) pipeline.incr(key("counter"));
const results = await pipeline.exec();
assert.deepEqual(results.map(([err, value]) => (err ? String(err) : value)), [...Array(1000).keys()].map((i) => i + 1));
const tx = await client.multi().set(key("{tx}a"), "5").incrby(key("{tx}a"), 2).get(key("{tx}a")).exec();
assert.deepEqual(tx, [[null, "OK"], [null, 7], [null, "7"]]);

const subscriber = new Redis(options);
await subscriber.subscribe(key("chan"));
let message = null;
subscriber.on("message", (channel, text) => {
  if (channel === key("chan")) message = text;
});
for (let i = 0; i < 100 && message === null; i++) {
  await client.publish(key("chan"), "hello");
  await new Promise((resolve) => setTimeout(resolve, 50));
}
assert.equal(message, "hello");
await subscriber.unsubscribe(key("chan"));
subscriber.disconnect();

const found = new Set();
let cursor = "0";
do {
  const [next, keys] = await client.scan(cursor, "MATCH", key("*"), "COUNT", 100);
  keys.forEach((k) => found.add(k));
  cursor = next;
} while (cursor !== "0");
const written = [key("a"), key("h"), key("z"), key("counter"), key("{tx}a"), ...Object.keys(many)];
assert.deepEqual([...found].sort(), written.sort());
await client.quit();
console.log("ALL OK");
