"""Strict-Transport-Security: on every answer to HTTPS, whoever answers it, and never on plain http."""

import pytest

HSTS = "Strict-Transport-Security"
# A form page twice (the second view is answered by CachedPages, in front of Flask), a landing page, a static file,
# the script embed, a page that does not exist, and the health check.
PATHS = ["/f/launch", "/f/launch", "/p/launch", "/static/form.css", "/embed.js", "/nowhere", "/healthz"]


def headers(client, path, **kwargs):
    response = client.get(path, **kwargs)
    response.close()  # static files are open until then
    return response.headers


def test_every_https_answer_carries_hsts_and_no_http_answer_does(client):
    for path in PATHS:
        assert headers(client, path, base_url="https://forms.example.com").get(HSTS) == "max-age=31536000", path
        assert HSTS not in headers(client, path), path


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (1, "https", True),  # Heroku's router: the visitor came over HTTPS
        (1, "http", False),
        (1, "https, http", False),  # the visitor forged the first entry; the trusted proxy saw http
        (2, "http, https", False),  # two proxies: the outer one's view counts
        (2, "https, http", True),
        (0, "https", False),  # nobody trusted in front: a forged header changes nothing
    ],
)
def test_behind_proxies_the_trusted_x_forwarded_proto_decides(make_app, hops, forwarded, expected):
    client = make_app(TRUSTED_PROXY_HOPS=hops).test_client()
    for path in ("/f/launch", "/f/launch", "/static/form.css", "/healthz"):
        sent = headers(client, path, headers={"X-Forwarded-Proto": forwarded, "X-Forwarded-For": "203.0.113.9"})
        assert (HSTS in sent) is expected, path
