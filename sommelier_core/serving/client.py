"""An asyncio HTTP/1.1 client of the service, with one keep-alive connection per outstanding request.

A load generator must not wait for one answer before sending the next (an open loop), and its
requests must reach the server's queue, not wait in the client: HTTP/1.1 answers a connection's
requests in order, so the client keeps a pool of connections and opens one more whenever all are
busy. It speaks just what the service's JSON endpoints need (Content-Length bodies).
"""

from __future__ import annotations

import asyncio
import json


class _StaleConnection(ConnectionError):
    """A connection that failed before any answer arrived."""


class ServingClient:
    """Requests to one service at `host:port`; `close()` when done."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.connections_opened = 0

    async def predict(self, inputs: object) -> dict:
        """POST /predict; the JSON answer (a non-200 answer raises, with the server's message)."""
        status, body = await self.request("POST", "/predict", {"inputs": inputs})
        if status != 200:
            raise RuntimeError(f"/predict answered {status}: {body.get('error', body)}")
        return body

    async def status(self) -> dict:
        """GET /status."""
        return (await self.request("GET", "/status"))[1]

    async def request(self, method: str, path: str, payload: object | None = None) -> tuple[int, dict]:
        """One request on an idle connection (or a new one); the status code and the decoded JSON body.

        A kept-alive connection the server has meanwhile closed (uvicorn closes idle ones) fails before
        any answer arrives; the request is then sent again once, on a new connection.
        """
        body = b"" if payload is None else json.dumps(payload).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        while self._idle:
            reader, writer = self._idle.pop()
            try:
                return await self._exchange(reader, writer, head + body)
            except _StaleConnection:
                continue
        return await self._exchange(*await self._open(), head + body)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes):
        try:
            writer.write(data)
            await writer.drain()
            status_line = await reader.readline()
        except ConnectionError as exc:
            writer.close()
            raise _StaleConnection from exc
        if not status_line:
            writer.close()
            raise _StaleConnection
        try:
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            content = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append((reader, writer))
        parts = status_line.decode("latin-1").split()
        if len(parts) < 2:
            raise ConnectionError(f"no HTTP answer from {self.host}:{self.port}")
        return int(parts[1]), json.loads(content) if content else {}

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.connections_opened += 1
        return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        """Close every idle connection."""
        for _, writer in self._idle:
            writer.close()
        for _, writer in self._idle:
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
        self._idle.clear()
