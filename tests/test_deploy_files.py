"""app.json (the Heroku button) against the Procfile and the settings the app refuses to start without."""

import json

from support import ROOT

from optin.settings import Settings


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_button_starts_every_process_and_migrates_in_the_release_phase():
    app_json = json.loads((ROOT / "app.json").read_text())
    processes = procfile()
    assert set(app_json["formation"]) == {"web", "worker"} <= set(processes)
    assert all(spec["quantity"] >= 1 for spec in app_json["formation"].values())
    assert processes["release"] == "python -m optin.db migrate"
    assert "heroku-postgresql" in json.dumps(app_json["addons"])  # a dyno's disk is wiped: no SQLite there


def test_the_button_asks_for_or_generates_every_variable_the_app_needs():
    env = json.loads((ROOT / "app.json").read_text())["env"]
    # What a button deploy sets: generated secrets, fixed values, what the form insists on, and the add-on's URL.
    deployed = {
        name: spec.get("value") or "typed-or-generated"
        for name, spec in env.items()
        if "generator" in spec or "value" in spec or spec.get("required")
    }
    Settings.from_env({**deployed, "DATABASE_URL": "postgres://u:p@h/db"})  # a ConfigError names what is missing
    assert env["SECRET_KEY"]["generator"] == "secret"


def test_an_installed_copy_has_every_package():
    """Platforms install the project (`.` in requirements.txt, `pip install .` in the Dockerfile): a subpackage
    the build leaves out (optin.db, convertkit.sandbox) would break `flask migrate` and the worker there."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    built = (
        set(find_packages(str(ROOT), **config.get("packages", {}).get("find", {})))
        if "find" in config.get("packages", {})
        else set(config.get("packages", []))
    )
    present = {
        str(p.parent.relative_to(ROOT)).replace("/", ".")
        for name in ("optin", "convertkit")
        for p in (ROOT / name).rglob("__init__.py")
    }
    assert present <= built, f"left out of an installed copy: {sorted(present - built)}"
