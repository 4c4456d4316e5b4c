"""HTTP/1.1 on the mock server's sockets: h11 does the framing, these helpers the plumbing.

Reading h11's events from an asyncio stream, the response head built from an
``httpx.Response`` (the route's status and headers, our framing), refusing a request
h11 cannot parse, and the TCP reset the ``ConnectionReset`` fault needs.
"""

from __future__ import annotations

import socket
import struct
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
import httpx

if TYPE_CHECKING:
    import asyncio

__all__ = ["MAX_HEAD", "READ_SIZE", "next_event", "raw_body", "refuse", "reset", "response_head"]

#: The longest request head (request line and headers) h11 buffers before refusing (431).
MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024
#: Hop-by-hop or framing headers the server writes itself.
OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


async def next_event(connection: h11.Connection, reader: asyncio.StreamReader) -> Any:
    """h11's next event, reading from the socket as it needs (EOF included)."""
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await reader.read(READ_SIZE))


async def refuse(
    connection: h11.Connection, writer: asyncio.StreamWriter, error: h11.RemoteProtocolError
) -> None:
    """Answer a request that is not HTTP/1.1 we can parse with h11's status hint, and close."""
    if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = f"bad request: {error}\n".encode()
    head = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    try:
        writer.write(
            connection.send(h11.Response(status_code=error.error_status_hint, headers=head))
            + connection.send(h11.Data(data=body))
            + connection.send(h11.EndOfMessage())
        )
        await writer.drain()
    except (h11.LocalProtocolError, ConnectionError):
        pass


async def raw_body(response: httpx.Response) -> bytes:
    """The body as it goes on the wire (not content-decoded)."""
    stream = response.stream
    if isinstance(stream, httpx.SyncByteStream):
        return b"".join(stream)
    return b"".join([chunk async for chunk in stream])


def response_head(response: httpx.Response, length: int) -> h11.Response:
    """The response head: the route's status and headers, our framing."""
    try:
        reason = HTTPStatus(response.status_code).phrase
    except ValueError:
        reason = ""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in OWN_HEADERS
    ]
    if response.status_code not in (204, 304):
        headers.append(("Content-Length", str(length)))  # for HEAD too: what GET would send
    headers.append(("Connection", "keep-alive"))  # h11 turns it into close when it must
    return h11.Response(status_code=response.status_code, headers=headers, reason=reason)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer gets a TCP RST: "connection reset by peer"."""
    raw = writer.get_extra_info("socket")
    if raw is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
