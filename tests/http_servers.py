"""Tiny real HTTP servers on 127.0.0.1 that answer as a test says, and the fake API key they may be sent."""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

KEY = "sk-test-5ecret-0123456789"
Answer = Callable[[str, str], tuple[int, dict, bytes]]  # (method, path) -> (status, headers, body)


@contextmanager
def serve(answer: Answer) -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP server on 127.0.0.1 (free port) answering with ``answer``; yields its root URL and the requests it saw."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
            status, headers, body = answer(self.command, self.path)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _handle

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def reply(body, status: int = 200, **headers: str) -> Answer:
    """Always the same answer; ``body`` is sent as is when bytes, else as JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda method, path: (status, {"Content-Type": "application/json", **headers}, raw)


def write_servers_file(tmp_path: Path, url: str, **server) -> Path:
    path = tmp_path / "servers.yaml"
    path.write_text(json.dumps({"servers": {"s": {"base_url": url, "model": "m", "style": "model", **server}},
                                "communities": {"patients": "s"}, "main": "s"}))
    return path


@contextmanager
def dripping(headers_first: bool, step: float = 0.5) -> Iterator[str]:
    """A raw HTTP server on 127.0.0.1 that sends its reply one byte every ``step`` seconds (after the headers, or from
    the first byte of the status line on); yields its root URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    body = b'{"choices": [{"text": "' + b"x" * 3000 + b'"}]}'
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if headers_first:
                conn.sendall(head)
            for byte in (body if headers_first else head + body):
                if stop.wait(step):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
