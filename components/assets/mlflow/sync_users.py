"""Create or update the platform's MLflow users through MLflow's auth REST API (a Job's work).

One user per project; its password is a mounted Secret file named after the user. The admin's
credentials come from another mounted Secret. Idempotent: an existing user gets its password
set again, a missing one is created. Standard library only (runs in the MLflow image).

Environment: ``MLFLOW_URL``, ``ADMIN_DIR`` (files ``username`` and ``password``), ``USERS_DIR``
(one file per user); optional ``WAIT_SECONDS`` for the server to come up.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

API = "/api/2.0/mlflow/users"


class Client:
    def __init__(self, url: str, username: str, password: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"MLFLOW_URL must be http(s), got {url!r}")
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - the in-cluster http:// URL of the server
            self.url + path, data=data, method=method, headers=self.headers
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - in-cluster URL
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def upsert(self, username: str, password: str) -> str:
        query = urllib.parse.urlencode({"username": username})
        status = self.call("GET", f"{API}/get?{query}")
        if status == 200:
            body = {"username": username, "password": password}
            done = self.call("PATCH", f"{API}/update-password", body)
            return _checked("update-password", username, done, "updated")
        if status == 404:
            body = {"username": username, "password": password}
            return _checked("create", username, self.call("POST", f"{API}/create", body), "created")
        raise RuntimeError(f"get {username}: HTTP {status} (are the admin credentials right?)")


def _checked(action: str, username: str, status: int, done: str) -> str:
    if status != 200:
        raise RuntimeError(f"{action} {username}: HTTP {status}")
    return done


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy in {seconds:.0f}s")
        time.sleep(3)


def main() -> int:
    url = os.environ["MLFLOW_URL"]
    admin = Path(os.environ["ADMIN_DIR"])
    users = Path(os.environ["USERS_DIR"])
    wait_for(url, float(os.environ.get("WAIT_SECONDS", "600")))
    client = Client(
        url,
        (admin / "username").read_text().strip(),
        (admin / "password").read_text().strip(),
    )
    # Secret volumes also hold ..data links and dot-directories: only plain user files count.
    for entry in sorted(users.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        print(f"{entry.name}: {client.upsert(entry.name, entry.read_text().strip())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
