"""Frontend AUTH through Puerta (password + named users).

usage: redis_auth.py HOST PORT
"""
import sys

import redis

host, port = sys.argv[1], int(sys.argv[2])


def check(protocol):
    """RESP2 (AUTH after connect) and redis-py's default RESP3 (HELLO 3 AUTH user pass)."""
    options = {"protocol": protocol} if protocol else {}

    def connect(**kw):
        return redis.Redis(host=host, port=port, socket_timeout=30, **options, **kw)

    try:
        connect().get("x")
        raise AssertionError("commands before AUTH must fail")
    except redis.exceptions.AuthenticationError as e:
        assert "Authentication required" in str(e) or "authenticated" in str(e), str(e)
    except redis.exceptions.ResponseError as e:
        assert "NOAUTH" in str(e), str(e)

    assert connect(password="s3cret").set("a", "1") is True
    assert connect(username="app", password="apppw").get("a") == b"1"
    for kw in ({"password": "wrong"}, {"username": "app", "password": "s3cret"}):
        try:
            connect(**kw).ping()
            raise AssertionError(f"{kw} must be refused")
        except redis.exceptions.AuthenticationError:
            pass
        except redis.exceptions.ResponseError as e:
            assert "WRONGPASS" in str(e), str(e)


check(2)
check(None)
print("ALL OK")
