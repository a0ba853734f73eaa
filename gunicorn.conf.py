"""gunicorn settings for a platform router (Heroku-style): read by `gunicorn app:app` from this folder."""

import os

# A platform sets PORT and expects every interface; `make run` sets HOST=127.0.0.1.
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
# Threads, because a request may wait a few seconds on ConvertKit's inline attempt; processes for the CPU. The
# worker is gunicorn's gthread with a front door: each request is read whole in the event loop before a thread
# takes it, so slow clients cost a socket each, not a thread (optin/server.py, docs/front-door.md). A request
# not complete within REQUEST_READ_SECONDS (default 10) is answered 408 and closed.
worker_class = "optin.server.BufferingWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# The router gives up after 30 s; answer (or fail) before it does.
timeout = 25
graceful_timeout = 20
keepalive = 5
# One listening socket per worker (SO_REUSEPORT): the kernel spreads new connections evenly. With one shared
# socket, whichever worker wakes first takes a burst of keep-alive connections and the other idles (measured:
# all 32 of wrk's connections on one worker, half the throughput, in about half the runs; again with the front
# door: 4,216-9,308 req/s shared, 8,501-9,556 per worker). SO_REUSEPORT would also let a second server share the
# port silently: on_starting below refuses to start then.
reuse_port = True
# No periodic restarts: at launch-day rates a 5,000-request limit restarted each worker every few seconds, and
# every restart showed as a latency spike. Set MAX_REQUESTS to recycle workers if a leak ever needs it.
max_requests = int(os.environ.get("MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
# The router terminates TLS and adds X-Forwarded-*; ProxyFix in the app trusts TRUSTED_PROXY_HOPS of them.
forwarded_allow_ips = "*"
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"


def on_starting(server):
    """SO_REUSEPORT would let this server share a port another server already listens on, each silently taking
    part of the visitors: refuse to start instead, naming the port. (Sockets handed over by a running master or
    by systemd are this server's own: nothing to check.)"""
    if os.environ.get("GUNICORN_FD") or os.environ.get("LISTEN_FDS"):
        return
    for address in server.cfg.address:
        if isinstance(address, tuple) and port_taken(*address[:2]):
            host, port = address[:2]
            server.log.error(
                "port %s is already in use on %s: another server listens there. Stop it, or set PORT to a free port.",
                port,
                host or "every interface",
            )
            raise SystemExit(1)


def port_taken(host: str, port: int) -> bool:
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # old connections in TIME_WAIT are fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False
