// TLS for the client scripts: when the test runs Puerta with TLS, it sets REDIS_TLS_CA,
// REDIS_TLS_CERT and REDIS_TLS_KEY, and the scripts' clients connect with them.
import { readFileSync } from "node:fs";

/** The `socket` options node-redis and ioredis pass to `tls.connect`, or `undefined` without TLS. */
export function tlsOptions() {
  const ca = process.env.REDIS_TLS_CA;
  if (!ca) return undefined;
  return {
    ca: readFileSync(ca),
    cert: readFileSync(process.env.REDIS_TLS_CERT),
    key: readFileSync(process.env.REDIS_TLS_KEY),
  };
}
