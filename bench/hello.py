"""The baselines, served by the same gunicorn.conf.py: `gunicorn bench.hello:app` from the repository root.

- `GET /`: the least a Flask app can do. The form's render throughput is measured against it.
- `POST /` (when DATABASE_URL is set): the least a Flask app can do with a signup and still keep it: read the
  posted address, store it in the signups table through optin/signups.py (the app's own database code, on a
  database of its own), and answer JSON. Intake is measured against it: what a form post adds (token, replay
  check, client and address windows, validation, the ConvertKit slot) on top of the one durable write no form
  backend can skip.

Ratios against these, taken in the same run, say how much the app itself costs, whatever the machine's speed.
"""

import os

from flask import Flask, jsonify, request

from optin.db import Database
from optin.signups import Signups

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "hello"


if os.environ.get("DATABASE_URL"):
    db = Database(os.environ["DATABASE_URL"])
    db.migrate()
    signups = Signups(db)

    @app.post("/")
    def store():
        signups.record(
            form_slug="baseline",
            convertkit_form_id=1,
            email=request.form["email"],
            first_name=None,
            fields={},
            tags=(),
            ip_hash=None,
        )
        return jsonify(ok=True)
