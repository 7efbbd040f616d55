"""Create MLflow's auth database next to the tracking database (an init container's job).

MLflow's auth store keeps its own migration history, so it cannot share the tracking database.
This reads the tracking store's URI from the mounted Secret file, connects with psycopg2 (part of
the MLflow ``-full`` image) and creates the auth database when it is missing. The URI stays inside
this process: it is neither in the pod spec nor on a command line.

Environment: ``BACKEND_STORE_URI_FILE`` (the mounted URI), ``AUTH_DB_NAME``; optional
``ATTEMPTS`` and ``DELAY_SECONDS`` for a database that is still starting.
"""

from __future__ import annotations

import os
import re
import sys
import time

NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def ensure_database(connect, uri: str, name: str) -> bool:
    """Create database ``name`` on the server of ``uri`` unless it exists; True if created."""
    if not NAME.fullmatch(name):  # it goes into the statement as an identifier
        raise ValueError(f"database name must match {NAME.pattern}, got {name!r}")
    conn = connect(uri)
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                return False
            cur.execute(f'CREATE DATABASE "{name}"')
            return True
    finally:
        conn.close()


def main() -> int:
    import psycopg2

    with open(os.environ["BACKEND_STORE_URI_FILE"], encoding="utf-8") as f:
        uri = f.read().strip()
    name = os.environ["AUTH_DB_NAME"]
    attempts = int(os.environ.get("ATTEMPTS", "30"))
    delay = float(os.environ.get("DELAY_SECONDS", "5"))
    for attempt in range(1, attempts + 1):
        try:
            created = ensure_database(psycopg2.connect, uri, name)
        except psycopg2.OperationalError as exc:  # not reachable yet: retry
            print(f"database not reachable ({attempt}/{attempts}): {exc}".strip(), file=sys.stderr)
            time.sleep(delay)
            continue
        print(f"auth database {name}: {'created' if created else 'present'}")
        return 0
    print(f"gave up after {attempts} attempts", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
