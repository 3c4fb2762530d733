"""One TLS connection to Puerta with Python's own ssl module (the CA, certificate and key from
REDIS_TLS_*): prints the common name of the certificate Puerta presented, PINGs; with STOP_FILE,
keeps the connection until that file exists and PINGs again on it, so a test can change what
Puerta serves in between.

usage: tls_peer.py HOST PORT [STOP_FILE]
"""
import os
import socket
import ssl
import sys
import time

host, port = sys.argv[1], int(sys.argv[2])
stop_file = sys.argv[3] if len(sys.argv) > 3 else None

ctx = ssl.create_default_context(cafile=os.environ["REDIS_TLS_CA"])
ctx.load_cert_chain(os.environ["REDIS_TLS_CERT"], os.environ["REDIS_TLS_KEY"])
conn = ctx.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=host)
subject = dict(item[0] for item in conn.getpeercert()["subject"])
print(f"CN={subject['commonName']}", flush=True)


def ping():
    conn.sendall(b"PING\r\n")
    reply = conn.recv(64)
    assert reply == b"+PONG\r\n", reply


ping()
if stop_file:
    while not os.path.exists(stop_file):
        time.sleep(0.05)
    ping()
    print("HELD OK", flush=True)
