"""Which stand-in does a connection through Puerta reach?

  mongo_whoami.py seed HOST:PORT=NAME ...   store NAME in each stand-in (directly, not through Puerta)
  mongo_whoami.py probe PROXY SRC ...       one fresh connection per source address (127.x.y.z), prints
                                            "SRC -> NAME" (or "SRC -> error: ...") per source
  mongo_whoami.py roundtrip A B SRC ...     per source: insert a document of its own through proxy A,
                                            find it through proxy B; prints "SRC -> ok" or the error

Probes speak raw OP_MSG so that each one is exactly one TCP connection from the given source address.
"""
import socket
import struct
import sys
import time

import bson
import pymongo

DB, COLL = "puerta_test", "whoami"


def seed(pairs):
    for pair in pairs:
        addr, name = pair.split("=", 1)
        host, port = addr.rsplit(":", 1)
        client = pymongo.MongoClient(host, int(port), directConnection=True, serverSelectionTimeoutMS=30000)
        client[DB][COLL].replace_one({"_id": "me"}, {"_id": "me", "name": name}, upsert=True)
        client.close()
        print(f"seeded {addr} as {name}", flush=True)


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def op_msg(doc, request_id):
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, 2013) + payload


def call(proxy, src, command):
    """One command on one fresh connection from `src`; the reply document."""
    host, port = proxy.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.bind((src, 0))
        sock.connect((host, int(port)))
        sock.sendall(op_msg(command, 1))
        length, _, _, opcode = struct.unpack("<iiii", recv_exact(sock, 16))
        body = recv_exact(sock, length - 16)
        if opcode != 2013 or body[4] != 0:
            raise ValueError(f"unexpected reply opcode {opcode}")
        reply = bson.decode(body[5:])
        if reply.get("ok") != 1:
            raise ValueError(f"unexpected reply {reply}")
        return reply


def whoami(proxy, src):
    reply = call(proxy, src, {"find": COLL, "filter": {"_id": "me"}, "$db": DB})
    docs = reply.get("cursor", {}).get("firstBatch", [])
    if not docs:
        raise ValueError(f"unexpected reply {reply}")
    return docs[0]["name"]


def roundtrip(a, b, sources):
    for src in sources:
        try:
            mark = f"{src}-{time.time()}"
            call(a, src, {"insert": "own", "documents": [{"_id": mark}], "$db": DB})
            reply = call(b, src, {"find": "own", "filter": {"_id": mark}, "$db": DB})
            found = reply.get("cursor", {}).get("firstBatch", [])
            result = "ok" if found else "error: not found through the other instance"
        except Exception as e:  # noqa: BLE001 - reported per source
            result = f"error: {type(e).__name__}: {e}"
        print(f"{src} -> {result}", flush=True)


def probe(proxy, sources):
    for src in sources:
        try:
            name = whoami(proxy, src)
        except Exception as e:  # reported per source; the Rust test decides
            name = f"error: {type(e).__name__}: {e}"
        print(f"{src} -> {name}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed(sys.argv[2:])
    elif sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3:])
    elif sys.argv[1] == "roundtrip":
        roundtrip(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
