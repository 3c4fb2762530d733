"""Counters a soak load client keeps, written to a JSON file about once a second.

The file is replaced atomically (write + rename), so `cargo xtask bench soak` can read it at any time.
Errors are also counted per wall-clock second, so that the harness can tell errors inside its backend
kill windows from errors outside them after the run.
"""

import json
import os
import re
import threading
import time


class Stats:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.ops = 0
        self.errors = 0
        self.mismatches = 0
        self.connections = 0
        self.error_kinds = {}
        self.error_seconds = {}
        self.last_write = 0.0

    def op(self, n=1):
        with self.lock:
            self.ops += n

    def connected(self):
        with self.lock:
            self.connections += 1

    def mismatch(self):
        with self.lock:
            self.mismatches += 1

    def error(self, exc):
        kind = error_kind(exc)
        second = str(int(time.time()))
        with self.lock:
            self.errors += 1
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            self.error_seconds[second] = self.error_seconds.get(second, 0) + 1

    def maybe_write(self):
        """Writes the file if the last write is more than a second old."""
        now = time.time()
        if now - self.last_write >= 1.0:
            self.write()

    def write(self):
        with self.lock:
            self.last_write = time.time()
            doc = {
                "ops": self.ops,
                "errors": self.errors,
                "mismatches": self.mismatches,
                "connections": self.connections,
                # Keep the file small even if something goes badly wrong.
                "error_kinds": dict(sorted(self.error_kinds.items(), key=lambda kv: -kv[1])[:20]),
                "error_seconds": self.error_seconds,
                "updated": self.last_write,
            }
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.path)


def error_kind(exc):
    """The exception type and the gist of its message: redis-py's pipeline errors quote the failing
    command with its key and value, so only what follows "caused error:" is kept, and numbers (slots,
    ports, counters) are masked so that one kind of failure is one line."""
    message = str(exc)
    if "caused error: " in message:
        message = message.split("caused error: ", 1)[1]
    message = re.sub(r"\d+", "N", message)
    return f"{type(exc).__name__}: {message[:70]}"


class Pace:
    """Sleeps so that `tick()` is called at most `rate` times per second on average."""

    def __init__(self, rate):
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    def tick(self):
        self.next += self.interval
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:
            # Fell far behind (a stall during a backend kill): do not burst to catch up.
            self.next = time.monotonic()
