"""The baseline for the render figure: the least a Flask app can do, served by the same gunicorn.conf.py.

`gunicorn bench.hello:app` from the repository root; the ratio of the form's throughput to this one's says
how much the app itself costs, on this machine, in this run, whatever the machine's speed.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "hello"
