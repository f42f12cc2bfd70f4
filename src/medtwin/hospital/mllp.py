"""An MLLP listener (HL7 v2 over TCP: ``0x0B message 0x1C 0x0D``) feeding a :class:`~.adt.CensusTracker` and
answering each message with its ACK or NAK. Binds to the address given (127.0.0.1 in tests and demos).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from medtwin.hospital.adt import CensusTracker, ack

START, END = b"\x0b", b"\x1c\x0d"
MAX_MESSAGE = 1 << 20


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tracker: CensusTracker,
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


async def start_mllp(tracker: CensusTracker, host: str, port: int, clock: Callable[[], datetime]) -> asyncio.Server:
    """Start listening; the caller owns the server (``server.close()``)."""
    return await asyncio.start_server(lambda r, w: _serve_connection(r, w, tracker, clock), host, port,
                                      limit=MAX_MESSAGE)
