"""`python -m optin.db migrate | version`, the Procfile's release line; `flask migrate` calls `main` too."""

from __future__ import annotations

import argparse
import os

from ..settings import Settings
from .database import Database
from .schema import MIGRATIONS


def main(argv: list[str] | None = None) -> int:
    """`python -m optin.db migrate`: the release step. Needs only DATABASE_URL, not the app's other secrets."""
    parser = argparse.ArgumentParser(prog="python -m optin.db", description=main.__doc__)
    parser.add_argument("command", choices=["migrate", "version"])
    args = parser.parse_args(argv)
    url = Settings.database_url_from(os.environ)
    db = Database(url)
    try:
        if args.command == "version":
            print(f"schema version {db.version()} (code expects {len(MIGRATIONS)})")
        else:
            applied = db.migrate()
            print(f"applied schema versions {applied}" if applied else "schema is up to date")
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
