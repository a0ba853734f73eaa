"""Static files as a CDN and a browser want them: compressed, validated, cached for the right time."""

import gzip
import re

import brotli


def fetch(client, path, **headers):
    response = client.get(path, headers=headers)
    body = response.get_data()
    response.close()
    return response, body


def test_embed_js_is_compressed_validated_and_cached_briefly(client):
    response, body = fetch(client, "/embed.js", **{"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip" and b"data-form" in gzip.decompress(body)
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert "Accept-Encoding" in response.headers["Vary"]
    again, _ = fetch(client, "/embed.js", **{"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_the_form_links_versioned_assets_cached_for_a_year(client):
    html = client.get("/f/launch").get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/static/[^"]+\?v=[0-9a-f]{12})"', html)
    assert len(assets) == 2
    for url in assets:
        response, body = fetch(client, url, **{"Accept-Encoding": "gzip"})
        assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
        assert "max-age=31536000" in response.headers["Cache-Control"] and response.headers["ETag"]


def test_plain_clients_get_plain_files(client):
    response, body = fetch(client, "/static/form.css")
    assert "Content-Encoding" not in response.headers and body.startswith(b"/*")


def test_browsers_that_accept_brotli_get_brotli_and_the_others_gzip(client):
    for path in ("/embed.js", "/static/form.css", "/static/form.js"):
        plain = fetch(client, path)[1]
        brotli_response, packed = fetch(client, path, **{"Accept-Encoding": "gzip, deflate, br"})
        assert brotli_response.headers["Content-Encoding"] == "br", path
        assert brotli.decompress(packed) == plain
        gzip_response, gzipped = fetch(client, path, **{"Accept-Encoding": "gzip"})
        assert gzip_response.headers["Content-Encoding"] == "gzip" and gzip.decompress(gzipped) == plain
        assert len(packed) < len(gzipped), path
