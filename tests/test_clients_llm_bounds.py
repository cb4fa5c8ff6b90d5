"""The OpenAI-compatible client is bounded (issue #13, defect 15): its timeout is a deadline for the whole request
(a server trickling bytes, in the headers or the body, used to keep it alive: 21 s with ``timeout=2``), and the
answer's size is capped (``glm.max_response_bytes``), on loopback servers that misbehave on purpose."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from aiops.clients.llm import LLMError, OpenAIChatClient

TIMEOUT = 1.0
# Far beyond the deadline: only a call that ignores it gets near this.
JOIN = 30.0
ANSWER = json.dumps({"choices": [{"message": {"role": "assistant", "content": "{}"}}]}).encode()


class RawServer:
    """A loopback HTTP server written on raw sockets, so it can answer as slowly or as much as a test wants.
    ``respond(conn, stop)`` runs per connection after the request was read; ``sent`` counts the bytes it wrote."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.sent = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            while len(body) < length:
                body += conn.recv(65536)
            try:
                self.respond(self, conn)
            except OSError:
                pass  # the client hung up: what a bounded client does

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def trickle_body(server: RawServer, conn: socket.socket) -> None:
    """A complete, valid answer, one byte every 50 ms (each read sees data well inside the timeout)."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(ANSWER))
    for byte in ANSWER:
        if server.stop.wait(0.05):
            return
        server.send(conn, bytes([byte]))


def trickle_headers(server: RawServer, conn: socket.socket) -> None:
    """Header lines that never end, one byte every 50 ms."""
    server.send(conn, b"HTTP/1.1 200 OK\r\n")
    while not server.stop.wait(0.05):
        server.send(conn, b"X")


def declared_huge(server: RawServer, conn: socket.socket) -> None:
    """An answer that says it is 50 MiB long."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n")
    chunk = b" " * 65536
    while not server.stop.is_set():
        server.send(conn, chunk)


def undeclared_huge(server: RawServer, conn: socket.socket) -> None:
    """An answer without a length that never ends (JSON whitespace, as fast as the socket takes it)."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b" " * 65536
    while not server.stop.is_set():
        server.send(conn, chunk)


def chat_outcome(url: str, **kw) -> BaseException | str:
    """What ``chat`` raised (or "returned"), run on a thread; "hung" if it was still running after JOIN seconds."""
    client = OpenAIChatClient(url, "glm", **kw)
    result: list = []

    def run() -> None:
        try:
            client.chat("system", "user")
            result.append("returned")
        except BaseException as exc:  # noqa: BLE001 - the outcome is what we look at
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN)
    return result[0] if result else "hung"


@pytest.mark.parametrize("respond", [trickle_body, trickle_headers])
def test_the_timeout_is_a_deadline_for_the_whole_request(respond):
    server = RawServer(respond)
    try:
        outcome = chat_outcome(server.url, timeout=TIMEOUT)
    finally:
        server.close()
    assert isinstance(outcome, LLMError), outcome
    assert f"no complete answer within {TIMEOUT:g}s" in str(outcome)


def test_a_prompt_answer_is_not_affected_by_the_deadline():
    def prompt(server: RawServer, conn: socket.socket) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(ANSWER) + ANSWER)

    server = RawServer(prompt)
    try:
        assert OpenAIChatClient(server.url, "glm", timeout=10).chat("system", "user") == "{}"
    finally:
        server.close()


@pytest.mark.parametrize("respond", [declared_huge, undeclared_huge])
def test_an_answer_over_the_cap_is_refused_without_reading_it_all(respond):
    server = RawServer(respond)
    try:
        outcome = chat_outcome(server.url, timeout=20, max_response_bytes=100_000)
    finally:
        server.close()
    assert isinstance(outcome, LLMError), outcome
    assert "more than glm.max_response_bytes (100000)" in str(outcome)
    # What the server managed to write before the client hung up: the cap plus socket buffers, not 50 MiB.
    assert server.sent < 20 * 1024 * 1024
