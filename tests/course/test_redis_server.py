"""The private Redis: loopback, a free port, restart on the same port, persistence only when asked."""

from course.redis_server import start_redis


def test_the_session_redis_is_private_and_emptied_per_test(redis_server, redis_url):
    assert redis_url == redis_server.url and redis_server.port != 6379
    client = redis_server.client()
    assert client.dbsize() == 0
    client.set("left-over", "1")
    assert client.connection_pool.connection_kwargs["host"] == "127.0.0.1"


def test_restart_keeps_the_port_and_loses_data_without_persistence():
    server = start_redis("t-volatile")
    try:
        server.client().set("k", "v")
        pid = server.pid
        server.restart(kill=True)
        assert server.pid != pid and server.ping()
        assert server.client().get("k") is None
    finally:
        server.remove()
    assert not server.dir.exists() and not server.running


def test_persistence_keeps_data_across_a_kill():
    server = start_redis("t-durable", persistence=True)
    try:
        server.client().set("k", "v")
        server.restart(kill=True)
        assert server.client().get("k") == "v"
    finally:
        server.remove()
