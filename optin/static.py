"""Static files through WhiteNoise: versioned URLs cached for a year, /embed.js (a fixed URL) for minutes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Flask, url_for
from whitenoise import WhiteNoise

EMBED_MAX_AGE = 300
YEAR = 365 * 24 * 3600


def register_static(app: Flask) -> None:
    root = Path(app.static_folder)
    versions = {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in root.rglob("*") if path.is_file()
    }

    def asset(filename: str) -> str:
        return url_for("static", filename=filename, v=versions.get(filename))

    def headers(response_headers, path, url):
        if url == "/embed.js":
            response_headers["Cache-Control"] = f"public, max-age={EMBED_MAX_AGE}"
        response_headers["Access-Control-Allow-Origin"] = "*"  # public files, fetched from other sites' pages
        response_headers["X-Content-Type-Options"] = "nosniff"

    app.jinja_env.globals["asset"] = asset
    middleware = WhiteNoise(app.wsgi_app, root=str(root), prefix="static/", max_age=YEAR,
                            add_headers_function=headers)
    middleware.add_files(str(root / "embed"), prefix="")
    app.wsgi_app = middleware
