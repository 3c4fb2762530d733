"""TLS for the client scripts: when the test runs Puerta with TLS, it sets REDIS_TLS_CA,
REDIS_TLS_CERT and REDIS_TLS_KEY, and every redis-py client the scripts make connects with them."""
import os


def redis_py_kwargs():
    ca = os.environ.get("REDIS_TLS_CA")
    if not ca:
        return {}
    return {
        "ssl": True,
        "ssl_ca_certs": ca,
        "ssl_certfile": os.environ["REDIS_TLS_CERT"],
        "ssl_keyfile": os.environ["REDIS_TLS_KEY"],
    }
