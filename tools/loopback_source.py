"""Shared by the demo and soak load scripts: Puerta places and pins MongoDB clients by IP, so a script
that simulates several clients gives each process its own loopback source address."""

import socket


def bind_source(source):
    """Makes every IPv4 loopback connect() of this process come from `source` (e.g. 127.0.0.2)."""
    original = socket.socket.connect

    def connect(self, address):
        if self.family == socket.AF_INET and address[0].startswith("127."):
            self.bind((source, 0))
        return original(self, address)

    socket.socket.connect = connect
