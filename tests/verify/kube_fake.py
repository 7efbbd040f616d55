"""A tiny Kubernetes API server on 127.0.0.1 serving canned responses in the real API's JSON shape.

Pointing a real `kubernetes.client.Configuration` at it exercises the client's URL building,
auth header and model deserialization, which monkeypatching the API methods would skip."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "verify-test-token"


def fixture(name: str) -> Any:
    return copy.deepcopy(json.loads((FIXTURES / name).read_text()))


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status, as the API server answers errors."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeApiServer:
    def __init__(self) -> None:
        # path (with query) -> (status, body: dict | bytes)
        self.routes: dict[str, tuple[int, Any]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    code, body = 401, status_body(401, "Unauthorized", "Unauthorized")
                else:
                    code, body = server.routes.get(
                        self.path,
                        (
                            404,
                            status_body(404, "NotFound", f"the server could not find {self.path}"),
                        ),
                    )
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                ctype = (
                    "text/plain; charset=utf-8" if isinstance(body, bytes) else "application/json"
                )
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def api_client(self) -> client.ApiClient:
        cfg = client.Configuration(host=self.url)
        cfg.api_key = {"BearerToken": TOKEN}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(cfg)

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig for this server, as the stack's `kubeconfig` output would carry one."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
