// node-redis 6 through Puerta, with createClient's defaults (RESP3) or RESP2 forced: the checks every
// client in the RESP3 suite runs.
// usage: node node_redis.mjs HOST PORT default|resp2
import { createClient } from "redis";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { tlsOptions } from "./tls_env.mjs";

const [host, port, mode] = process.argv.slice(2);
const options = { socket: { host, port: Number(port), reconnectStrategy: false } };
if (mode === "resp2") options.RESP = 2;
const tls = tlsOptions();
if (tls) Object.assign(options.socket, { tls: true, ...tls });
const run = randomUUID().slice(0, 8);
const key = (name) => `node-redis:${mode}:${run}:${name}`;

const client = createClient(options);
client.on("error", (e) => {
  console.error("client error", e);
  process.exit(1);
});
await client.connect();
assert.equal((await client.hello()).proto, mode === "resp2" ? 2 : 3);

assert.equal(await client.set(key("a"), "1"), "OK");
assert.equal(await client.get(key("a")), "1");
const many = Object.fromEntries([...Array(50).keys()].map((i) => [key(`m${i}`), `v${i}`]));
assert.equal(await client.mSet(many), "OK");
assert.deepEqual(await client.mGet([...Object.keys(many), key("missing")]), [...Object.values(many), null]);
await client.hSet(key("h"), { f1: "x", f2: "y" });
const hash = await client.hGetAll(key("h"));
assert.deepEqual({ ...hash }, { f1: "x", f2: "y" });
await client.zAdd(key("z"), { score: 2.5, value: "m" });
const score = await client.zScore(key("z"), "m");
assert.equal(typeof score, "number");
assert.equal(score, 2.5);

const pipeline = client.multi();
for (let i = 0; i < 1000; i++) pipeline.incr(key("counter"));
assert.deepEqual(await pipeline.execAsPipeline(), [...Array(1000).keys()].map((i) => i + 1));
const tx = await client.multi().set(key("{tx}a"), "5").incrBy(key("{tx}a"), 2).get(key("{tx}a")).exec();
assert.deepEqual(tx, ["OK", 7, "7"]);

const subscriber = client.duplicate();
subscriber.on("error", (e) => {
  console.error("subscriber error", e);
  process.exit(1);
});
await subscriber.connect();
const received = new Promise((resolve) => subscriber.subscribe(key("chan"), resolve));
await new Promise((resolve) => setTimeout(resolve, 0));
let message = null;
received.then((m) => (message = m));
for (let i = 0; i < 100 && message === null; i++) {
  await client.publish(key("chan"), "hello");
  await new Promise((resolve) => setTimeout(resolve, 50));
}
assert.equal(message, "hello");
await subscriber.unsubscribe(key("chan"));
await subscriber.quit();

const found = new Set();
for await (const keys of client.scanIterator({ MATCH: key("*"), COUNT: 100 })) {
  for (const k of [].concat(keys)) found.add(k);
}
const written = [key("a"), key("h"), key("z"), key("counter"), key("{tx}a"), ...Object.keys(many)];
assert.deepEqual([...found].sort(), written.sort());
await client.quit();
console.log("ALL OK");
