"""gunicorn settings for a platform router (Heroku-style): read by `gunicorn app:app` from this folder."""

import os

# A platform sets PORT and expects every interface; `make run` sets HOST=127.0.0.1.
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
# Threads, because a request may wait a few seconds on ConvertKit's inline attempt; processes for the CPU.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# The router gives up after 30 s; answer (or fail) before it does.
timeout = 25
graceful_timeout = 20
keepalive = 5
max_requests = 5000
max_requests_jitter = 500
# The router terminates TLS and adds X-Forwarded-*; ProxyFix in the app trusts TRUSTED_PROXY_HOPS of them.
forwarded_allow_ips = "*"
accesslog = "-" if os.environ.get("ACCESS_LOG", "1") == "1" else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
