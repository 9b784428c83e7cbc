"""A small local HTTP server for the explorer page (standard library only, loopback only).

GET  /                      the page
GET  /api/info              model label, grid, default mask settings, image list
GET  /api/thumb/<id>.png    64 px thumbnail
GET  /api/sample?image=&seed=&enc_scale=&pred_scale=&aspect=&npred=&min_keep=&overlap=
POST /api/upload?name=      raw image bytes -> {id, name, source}
Errors come back as JSON {"error": "..."} with status 400 (bad input), 403 (a foreign Host,
or a POST from another origin), 404, or 413 (an upload over `MAX_UPLOAD` bytes, 20 MiB, or an image over
`images.MAX_PIXELS`, 40 megapixels).

Every request must name this server in its Host header, so a page on a name rebound to
127.0.0.1 (DNS rebinding) reads nothing; a POST must also name it in its Origin where the
client sends one (every browser does), so another site's page cannot upload (cross-site
request forgery).
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from ijepa.explore.images import ImageTooLarge
from ijepa.explore.page import page_html
from ijepa.explore.session import Explorer, settings_from_query

MAX_UPLOAD = 20 << 20  # bytes


class Refused(Exception):
    """A request answered before its body is read: HTTP `status` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class ExploreHandler(BaseHTTPRequestHandler):
    explorer: Explorer  # set on the subclass `make_server` builds
    lock: threading.Lock  # one model call at a time: torch on 2 cores gains nothing from more
    timeout = 60  # seconds of socket silence before a stalled client's thread gives up

    def log_message(self, format: str, *args) -> None:  # quiet: the CLI prints the address only
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        try:
            self._same_origin(method)
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
        except Refused as e:
            self.close_connection = True  # the unread body must not be parsed as a request
            self._json({"error": str(e)}, e.status)
        except KeyError as e:
            self._json({"error": e.args[0] if e.args else str(e)}, 404)
        except ImageTooLarge as e:
            self._json({"error": str(e)}, 413)
        except ValueError as e:
            self._json({"error": str(e)}, 400)

    def _own_hosts(self) -> set[str]:
        """`host:port` forms that name this server (it listens on loopback only)."""
        host, port = self.server.server_address[:2]
        return {f"{name}:{port}" for name in (host, "127.0.0.1", "localhost")}

    def _same_origin(self, method: str) -> None:
        """Refuse (403) any request whose Host header, or a POST whose Origin header, names
        anything but this server: a page on a name rebound to 127.0.0.1 must not read it."""
        own = self._own_hosts()
        host, origin = self.headers.get("Host", ""), self.headers.get("Origin")
        if host not in own:
            raise Refused(403, f"Host {host!r}: expected this server ({', '.join(sorted(own))})")
        if method == "POST" and origin is not None and origin not in {f"http://{h}" for h in own}:
            raise Refused(403, f"Origin {origin!r}: cross-origin POST refused (expected http://{host})")

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
        length = self.headers.get("Content-Length") or "0"
        n = int(length) if length.isdigit() else -1
        if n > MAX_UPLOAD:
            raise Refused(413, f"{name}: upload of {n} bytes is too large (expected at most {MAX_UPLOAD >> 20} MiB)")
        if n <= 0:
            raise Refused(400, f"{name}: Content-Length {length!r} (expected 1 byte to {MAX_UPLOAD >> 20} MiB)")
        data = self.rfile.read(n)
        with self.lock:
            item = self.explorer.add_upload(data, name)
        return {"id": item.id, "name": item.name, "source": item.source}

    def handle_one_request(self) -> None:
        """A client that hangs up early (a closed tab) is one log line, not a traceback."""
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            self.close_connection = True
            request = getattr(self, "requestline", "") or "a request"
            sys.stderr.write(f"explore: client {self.client_address[0]} hung up before the answer to {request!r} ({e.__class__.__name__})\n")

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
