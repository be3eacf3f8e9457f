"""Read one file part of a ``multipart/form-data`` request body as it arrives.

Lesson 2's upload endpoint takes ``request: Request`` instead of ``UploadFile``: with an
``UploadFile`` parameter, FastAPI has Starlette parse the WHOLE body (spooling each file to
memory, then to a temp file past 1 MiB) before the endpoint runs. :func:`open_file_field` feeds
``request.stream()`` to python-multipart's streaming parser instead and hands over the file part's
bytes as they come off the socket, so the endpoint decides where they go and can stop at any size.

It answers the usual client mistakes with a 4xx that says what to do: not multipart (415), no
boundary or a malformed body (400), no field of that name or a text field instead of a file (422).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

__all__ = ["open_file_field"]


async def open_file_field(request: Request, field_name: str = "file") -> tuple[str, AsyncIterator[bytes]]:
    """Read the request body until the part ``field_name`` starts; return the filename the
    client sent (raw, untrusted: it may be empty, hold ``..``, slashes or control characters)
    and an async iterator over the part's bytes.

    Unlike ``UploadFile``, nothing is spooled: each chunk is handed over as it comes off
    the socket, so the caller decides where it goes and can stop at any size.
    """
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise HTTPException(415, "Send the file as multipart/form-data, in a field named "
                                 f"{field_name!r} (for example httpx.post(url, files={{{field_name!r}: ...}})).")
    if not options.get(b"boundary"):
        raise HTTPException(400, "The multipart/form-data Content-Type header has no boundary.")

    events: list[tuple[str, Any]] = []  # filled by the parser callbacks, drained after each write
    part: dict[str, Any] = {}

    def on_part_begin() -> None:
        part.clear()
        part.update(disposition=b"", header=b"", value=b"", wanted=False)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        if part["header"].lower() == b"content-disposition":
            part["disposition"] = part["value"]
        part["header"] = part["value"] = b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(part["disposition"])
        if params.get(b"name", b"").decode("utf-8", "replace") != field_name:
            return
        if b"filename" not in params:
            events.append(("text", None))
            return
        raw = params[b"filename"]
        try:
            filename = raw.decode("utf-8")
        except UnicodeDecodeError:
            filename = raw.decode("latin-1")
        part["wanted"] = True
        events.append(("file", filename))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part["wanted"] and end > start:
            events.append(("data", data[start:end]))

    def on_part_end() -> None:
        if part["wanted"]:
            events.append(("end", None))
            part["wanted"] = False

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })

    async def parsed_events() -> AsyncIterator[tuple[str, Any]]:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                batch = events[:]
                events.clear()
                for event in batch:
                    yield event
            parser.finalize()
        except FormParserError:
            raise HTTPException(400, "The multipart body is malformed.") from None

    stream = parsed_events()
    async for kind, value in stream:
        if kind == "text":
            raise HTTPException(422, f"The field {field_name!r} holds text, not a file: send it as a file part "
                                     "(a form <input type=file>, or files= in httpx).")
        if kind == "file":
            filename = value
            break
    else:
        raise HTTPException(422, f"The form has no field named {field_name!r}: send the file in a multipart "
                                 f"field called {field_name!r}.")

    async def chunks() -> AsyncIterator[bytes]:
        async for kind, value in stream:
            if kind == "data":
                yield value
            elif kind == "end":
                return
        raise HTTPException(400, "The body ended before the file part did.")

    return filename, chunks()
