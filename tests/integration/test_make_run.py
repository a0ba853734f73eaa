"""`make run`'s processes (bin/dev → honcho → sandbox, gunicorn, worker): a signup reaches the sandbox."""

import signal

import pytest
import requests
from support import ROOT, extract_token, free_port, wait_until


@pytest.mark.parametrize("version", ["v3", "v4"])
def test_make_run_serves_the_forms_and_a_signup_reaches_the_sandbox(processes, tmp_path, version):
    web_port, sandbox_port = free_port(), free_port()
    env = {
        "PORT": str(web_port),
        "SANDBOX_PORT": str(sandbox_port),
        "MIN_FILL_SECONDS": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path}/dev.sqlite3",
        "PATH": "/usr/bin:/bin",
        "CONVERTKIT_API_VERSION": version,
    }
    dev = processes([str(ROOT / "bin" / "dev")], env, "make-run")
    url = f"http://127.0.0.1:{web_port}"

    def up():
        try:
            return requests.get(f"{url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, 60, f"make run did not come up:\n{dev.output()}")
    assert f"Open {url}/" in dev.output()  # make run says where to look
    assert "launch" in requests.get(f"{url}/", timeout=5).text  # the index is on in development
    session = requests.Session()
    token = extract_token(session.get(f"{url}/f/launch", timeout=5).text)
    answer = session.post(
        f"{url}/f/launch",
        data={"token": token, "email": "dev@example.com"},
        headers={"Accept": "application/json"},
        timeout=10,
    )
    assert answer.json()["ok"] is True

    def received():  # v4: the worker adds them to the form a moment after the visitor's call
        entries = requests.get(f"http://127.0.0.1:{sandbox_port}/_sandbox/subscribers", timeout=5).json()
        return [(s["email"], s["version"]) for s in entries if s["form_id"] == 4242]

    assert wait_until(received, 30, "the signup never reached the sandbox") == [("dev@example.com", version)]
    dev.signal(signal.SIGTERM)
