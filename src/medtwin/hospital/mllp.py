"""An MLLP listener (HL7 v2 over TCP: ``0x0B message 0x1C 0x0D``) feeding a :class:`~.adt.CensusTracker` and
answering each message with its ACK or NAK. Binds to the address given (127.0.0.1 in tests and demos).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from medtwin.hospital.adt import Outcome, ack

START, END = b"\x0b", b"\x1c\x0d"
MAX_MESSAGE = 1 << 20


class Handler(Protocol):
    """What answers a message: a :class:`~.adt.CensusTracker`, or the app's :class:`~.live.LiveHospital`."""

    def handle(self, text: str) -> Outcome: ...


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tracker: Handler,
                            clock: Callable[[], datetime]) -> None:
    try:
        while True:
            try:
                block = await reader.readuntil(END)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            text = block[block.find(START) + 1: -len(END)].decode("utf-8", errors="replace")
            outcome = tracker.handle(text)
            writer.write(START + ack(text, outcome, clock()).encode() + END)
            await writer.drain()
    finally:
        writer.close()


async def start_mllp(tracker: Handler, host: str, port: int, clock: Callable[[], datetime]) -> asyncio.Server:
    """Start listening; the caller owns the server (``server.close()``)."""
    return await asyncio.start_server(lambda r, w: _serve_connection(r, w, tracker, clock), host, port,
                                      limit=MAX_MESSAGE)


class MllpThread:
    """An MLLP listener on its own event loop in a daemon thread (the API server's loop stays free): what
    the app starts when ``hospital_mllp_port`` is set, and the demo's feed talks to. ``stop()`` closes it."""

    def __init__(self, handler: Handler, host: str, port: int, clock: Callable[[], datetime]) -> None:
        self._loop = asyncio.new_event_loop()  # started in its thread: the caller may be inside a running loop
        self._thread = threading.Thread(target=self._loop.run_forever, name="mllp", daemon=True)
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(start_mllp(handler, host, port, clock), self._loop)
        self._server = started.result(timeout=30)  # generous: a loaded machine; no cost when it starts at once
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


def send_mllp(host: str, port: int, messages: list[str], timeout_s: float = 5.0) -> list[str]:
    """Send messages over one connection, each answered before the next; the answers (ACK/NAK) in order."""
    answers = []
    with socket.create_connection((host, port), timeout=timeout_s) as conn:
        for text in messages:
            conn.sendall(START + text.encode() + END)
            data = b""
            while not data.endswith(END):
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("the listener closed the connection before answering")
                data += chunk
            answers.append(data[data.find(START) + 1: -len(END)].decode())
    return answers
