"""A small local HTTP server for the explorer page (standard library only, loopback only).

GET  /                      the page
GET  /api/info              model label, grid, default mask settings, image list
GET  /api/thumb/<id>.png    64 px thumbnail
GET  /api/sample?image=&seed=&enc_scale=&pred_scale=&aspect=&npred=&min_keep=&overlap=
POST /api/upload?name=      raw image bytes -> {id, name, source}
Errors come back as JSON {"error": "..."} with status 400 (bad input) or 404.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from ijepa.explore.page import page_html
from ijepa.explore.session import Explorer, settings_from_query

MAX_UPLOAD = 20 << 20


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class ExploreHandler(BaseHTTPRequestHandler):
    explorer: Explorer  # set on the subclass `make_server` builds
    lock: threading.Lock  # one model call at a time: torch on 2 cores gains nothing from more

    def log_message(self, format: str, *args) -> None:  # quiet: the CLI prints the address only
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        try:
            if method == "GET" and url.path == "/":
                return self._send(200, page_html().encode(), "text/html; charset=utf-8")
            if method == "GET" and url.path == "/api/info":
                with self.lock:
                    return self._json(self.explorer.info())
            if method == "GET" and url.path.startswith("/api/thumb/") and url.path.endswith(".png"):
                image_id = unquote(url.path[len("/api/thumb/") : -len(".png")])
                with self.lock:
                    return self._send(200, self.explorer.thumbnail(image_id), "image/png")
            if method == "GET" and url.path == "/api/sample":
                return self._json(self._sample(query))
            if method == "POST" and url.path == "/api/upload":
                return self._json(self._upload(query.get("name", "upload")))
            self._json({"error": f"{method} {url.path}: no such endpoint"}, 404)
        except KeyError as e:
            self._json({"error": e.args[0] if e.args else str(e)}, 404)
        except ValueError as e:
            self._json({"error": str(e)}, 400)

    def _sample(self, query: dict[str, str]) -> dict:
        if "image" not in query:
            raise ValueError("image: missing (expected ?image=<id>)")
        try:
            seed = int(query.get("seed", "0"))
        except ValueError:
            raise ValueError(f"seed: expected an integer, got {query['seed']!r}") from None
        settings = settings_from_query(query, self.explorer.defaults)
        with self.lock:
            s = self.explorer.sample(query["image"], settings, seed)
        return {**s.data, "png": {k: data_uri(v) for k, v in s.pngs.items()}}

    def _upload(self, name: str) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        if not 0 < n <= MAX_UPLOAD:
            raise ValueError(f"{name}: upload of {n} bytes (expected 1 byte to {MAX_UPLOAD >> 20} MiB)")
        data = self.rfile.read(n)
        with self.lock:
            item = self.explorer.add_upload(data, name)
        return {"id": item.id, "name": item.name, "source": item.source}

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")


def make_server(explorer: Explorer, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Bound (not yet serving) server; port 0 picks a free one (see `server_address`)."""
    handler = type("Handler", (ExploreHandler,), {"explorer": explorer, "lock": threading.Lock()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
