"""Static files through WhiteNoise: compressed, versioned URLs cached for a year, /embed.js for five minutes.

WhiteNoise serves only files that exist, pre-compressed ones included, so each process copies the (small)
static folder once at start-up and writes a Brotli and a gzip copy of each file (about 15 ms); nothing is
compressed per request. Browsers that accept br get files a fifth smaller than gzip; the rest get gzip.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from pathlib import Path

from flask import Flask, url_for
from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

EMBED_MAX_AGE = 300  # its URL is pasted into sites and cannot change, so a new version must show up soon
YEAR = 365 * 24 * 3600


def register_static(app: Flask) -> None:
    if app.static_folder is None:
        raise RuntimeError("the app has no static folder to serve")
    source = Path(app.static_folder)
    versions = {
        path.relative_to(source).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in source.rglob("*")
        if path.is_file()
    }

    def asset(filename: str) -> str:
        return url_for("static", filename=filename, v=versions.get(filename))

    def headers(response_headers, path, url):
        if url == "/embed.js":
            response_headers["Cache-Control"] = f"public, max-age={EMBED_MAX_AGE}"
        response_headers["Access-Control-Allow-Origin"] = "*"  # public files, loaded by other sites' pages
        response_headers["X-Content-Type-Options"] = "nosniff"

    root = compressed_copy(source)
    app.jinja_env.globals["asset"] = asset
    middleware = WhiteNoise(app.wsgi_app, root=str(root), prefix="static/", max_age=YEAR, add_headers_function=headers)
    middleware.add_files(str(root / "embed"), prefix="")
    app.wsgi_app = middleware


def compressed_copy(source: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="optin-static-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    shutil.copytree(source, root, dirs_exist_ok=True)
    compressor = Compressor(use_brotli=True, use_gzip=True, quiet=True)  # Brotli needs the brotli package
    for path in list(root.rglob("*")):
        if path.is_file() and compressor.should_compress(path.name):
            for _ in compressor.compress(str(path)):
                pass
    return root
