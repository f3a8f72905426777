"""How much work one request may cost, bounded before the work starts.

`BodyLimit` (ASGI middleware) reads a POST body itself, stopping at the limit whether or not the client
announced a Content-Length (a chunked upload has none), so a 30 MB upload holds 5 MB of memory and gets a
413 that states the limit (the rest of its body is read and dropped, up to 64 MB, so that the client is
not reset before it reads the answer); it also caps how many large bodies are held at the same time. The
endpoint then reads the body from memory. Decoding is bounded apart (predictor.DECODER: two threads),
and so is inference (the model's lock).

Slow clients: a client that sends its headers and a few bytes, then stalls, must not keep anyone else
waiting. The whole body must arrive within BODY_SECONDS of the request (a 408 otherwise), and a body
takes one of the BODY_SLOTS only once it is larger than SMALL_BODY_BYTES (no more than the server buffers
for every connection anyway). So stalled clients that sent little hold no slot: fresh uploads and reads
(GET requests never wait for a slot) go through at once, and a stalled client that sent more than that
holds its slot for BODY_SECONDS at most, not minutes.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import JSONResponse

Scope = dict[str, Any]
BODY_METHODS = {"POST", "PUT", "PATCH"}
DRAIN_BYTES = 64 * 2**20  # before a 413, read (and drop) at most this much more, so the client sees the answer
DRAIN_SECONDS = 5.0
BODY_SECONDS = 10.0  # the whole body, from the request's arrival (a wait for a slot included); else a 408
BODY_SLOTS = 8  # large bodies held at once (each up to the upload limit)
SMALL_BODY_BYTES = 64 * 1024  # read without a slot: the server buffers this much per connection anyway


def megabytes(n: int) -> str:
    """5 MB, 5.1 MB; small sizes in bytes (4,500 bytes)."""
    if n < 2**20 // 10:
        return f"{n:,} bytes"
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


class BodyLimit:
    """Refuse request bodies over `limit` bytes with a 413 that states the limit, reading no more than
    `limit + 1` bytes of them; hold at most `slots` bodies over SMALL_BODY_BYTES in memory at once (the
    others wait); answer a 408 to a body not received within `body_seconds`."""

    def __init__(self, app: Any, limit: int, shown_limit: int, slots: int = BODY_SLOTS,
                 body_seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.shown_limit = shown_limit  # the file size limit users are told (limit allows for the form)
        self.n_slots = slots
        self.body_seconds = body_seconds
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def slots(self) -> asyncio.Semaphore:
        """The semaphore of the running event loop (a test client may run each request in a new one)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.n_slots), loop
        return self._slots

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.limit:
            await self._refuse(scope, receive, send, f"the upload is {megabytes(length)}; "
                                                     f"the limit is {megabytes(self.shown_limit)}")
            return
        async with contextlib.AsyncExitStack() as held:  # a slot, once taken, is held until the answer is sent
            try:
                async with asyncio.timeout(self.body_seconds):
                    body = await self._read(receive, held)
            except TimeoutError:
                await JSONResponse({"detail": f"the upload was not received within {self.body_seconds:g} s"},
                                   status_code=408, headers={"Connection": "close"})(scope, receive, send)
                return
            if body is None:  # the client went away
                return
            body, complete = body
            if len(body) > self.limit:
                await self._refuse(scope, receive, send, f"the upload is over the limit of "
                                                         f"{megabytes(self.shown_limit)} (it was not read further)",
                                   drain=not complete)
                return
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Any, held: contextlib.AsyncExitStack) -> tuple[bytes, bool] | None:
        """(the body, or its first limit + 1 bytes; whether it was read to its end), None on a disconnect.
        A body that grows over SMALL_BODY_BYTES takes a slot, kept in `held`."""
        chunks, size, slot = [], 0, False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > SMALL_BODY_BYTES and not slot:
                await held.enter_async_context(self.slots())
                slot = True
            complete = not message.get("more_body", False)
            if size > self.limit:  # stop reading here: the rest of the body is never held
                return b"".join(chunks)[: self.limit + 1], complete
            if complete:
                return b"".join(chunks), True

    async def _refuse(self, scope: Scope, receive: Any, send: Any, detail: str, drain: bool = True) -> None:
        if drain:
            await _drain(receive)
        await JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})(
            scope, receive, send)


async def _drain(receive: Any) -> None:
    """Read and drop what the client still sends, a bounded amount, before answering: a server that
    closes a connection with unread data makes the kernel reset it, and the client would lose the 413.
    Nothing read here is kept."""
    loop = asyncio.get_running_loop()
    deadline, dropped = loop.time() + DRAIN_SECONDS, 0
    while dropped < DRAIN_BYTES:
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replayed
