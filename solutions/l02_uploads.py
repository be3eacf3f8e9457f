"""Lesson 2: uploads done right.

``POST /uploads`` streams the file to disk in chunks under a name the server
chooses, answers ``202`` at once, and leaves the checksum and the log row to a
background task with its own SQLite connection. ``GET /uploads/{id}`` reports
how that went. Four exercises, marked TODO 1 to 4 in the order they appear
below. Grade them with ``make check`` or the self-check cell in
notebooks/02_uploads.ipynb.

What is given: the upload endpoint that ties your functions together (in
``create_app``), ``course.multipart.open_file_field`` (reads the multipart body
as it arrives, instead of letting Starlette spool all of it first), and, at the
end of the file, the SQLite helpers (``connect``), ``sha256_of_file`` and
``too_large``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from course.multipart import open_file_field

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 10 * MiB
FIELD_NAME = "file"
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
MAX_NAME_CHARS = 255
COLUMNS = ("id", "status", "original_name", "size", "sha256", "error")  # what GET /uploads/{id} returns


# --- TODO 1: names ------------------------------------------------------------

def display_name(client_filename: str) -> str:
    """The client's filename, made safe to store and show. It is metadata only: it never
    becomes a path.

    TODO 1a: if the name is empty (or only spaces), raise ``HTTPException(422, ...)``
    with a message that says the filename is empty (a browser form sends an empty
    name when no file was picked). Otherwise keep only the part after the last ``/``
    or ``\\`` (clients on any OS), drop control characters (``unicodedata.category``
    starting with "C": NUL, newlines, right-to-left overrides), strip spaces, use
    ``"unnamed"`` if nothing (or only "." or "..") is left, and cut it to
    ``MAX_NAME_CHARS`` characters.
    """
    ### SOLUTION
    if not client_filename.strip():
        raise HTTPException(422, "The file part has an empty filename: pick a file before sending "
                                 "(a browser form sends an empty name when no file was chosen).")
    name = re.split(r"[/\\]", client_filename)[-1]
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C")).strip()
    if name in ("", ".", ".."):
        name = "unnamed"
    return name[:MAX_NAME_CHARS]
    ### STUB
    # raise HTTPException(501, "TODO 1: display_name must turn the client's filename into safe metadata")
    ### END


def storage_path(upload_dir: Path, upload_id: str) -> Path:
    """Where the bytes of upload ``upload_id`` go.

    TODO 1b: the server decides: return ``upload_dir / f"{upload_id}.bin"``. Refuse
    (``ValueError``) an id that is not exactly 32 lowercase hex characters (what
    ``uuid.uuid4().hex`` gives), so even a bad caller cannot reach outside the folder.
    """
    ### SOLUTION
    if not UPLOAD_ID.fullmatch(upload_id):
        raise ValueError(f"not an upload id: {upload_id!r}")
    return upload_dir / f"{upload_id}.bin"
    ### STUB
    # raise HTTPException(501, "TODO 1: storage_path must choose the file's path from the upload id")
    ### END


# --- TODO 2: stream to disk with a limit ----------------------------------------

async def save_stream(chunks: AsyncIterator[bytes], destination: Path, max_bytes: int) -> int:
    """Write ``chunks`` to ``destination`` as they arrive; return the number of bytes.

    TODO 2: the whole point of the lesson: never hold the upload in memory. Open the
    file with ``destination.open("xb")`` ("x": fail rather than overwrite a file that is
    there), then write each chunk before you read the next one, with
    ``await run_in_threadpool(out.write, chunk)`` (a slow disk must not stall the event
    loop), and count the bytes. As soon as the count passes ``max_bytes``, raise
    ``too_large(max_bytes)`` (a 413) without reading further. If anything goes wrong
    after the file was created (too large, client gone, disk full, or the task cancelled,
    which raises ``asyncio.CancelledError``: a ``BaseException``, not an ``Exception``),
    delete the partial file, then re-raise: a refused upload leaves nothing behind.
    """
    ### SOLUTION
    size = 0
    out = destination.open("xb")
    try:
        with out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise too_large(max_bytes)
                await run_in_threadpool(out.write, chunk)
    except BaseException:  # cancellation too: the partial file must go in every case
        destination.unlink(missing_ok=True)
        raise
    return size
    ### STUB
    # raise HTTPException(501, "TODO 2: save_stream must write the chunks to disk and enforce the size limit")
    ### END


# --- TODO 3: the background task ---------------------------------------------------

def finish_upload(db_path: str | Path, upload_id: str, path: Path, checksum: Callable[[Path], str]) -> None:
    """Background task: checksum the saved file and record the outcome in the ``uploads`` row.

    It runs after the response, in a worker thread (a plain ``def``). Nobody is
    there to see an exception, so it must record its own failure.

    TODO 3: compute ``checksum(path)``. Then open YOUR OWN connection with
    ``connect(db_path)`` (a connection made in another thread cannot be used here)
    and update the row ``upload_id``: ``status='done'`` and ``sha256=<digest>``;
    or, if the checksum raised, ``status='failed'`` and
    ``error="<ExceptionName>: <message>"`` (log it with ``log.exception``).
    Pass the values as query parameters (the error message is text from anywhere),
    commit, close the connection, and do not re-raise.
    """
    ### SOLUTION
    try:
        outcome = {"status": "done", "sha256": checksum(path), "error": None}
    except Exception as exc:
        log.exception("upload %s failed", upload_id)
        outcome = {"status": "failed", "sha256": None, "error": f"{type(exc).__name__}: {exc}"}
    with closing(connect(db_path)) as db, db:
        db.execute("UPDATE uploads SET status = :status, sha256 = :sha256, error = :error WHERE id = :id",
                   {**outcome, "id": upload_id})
    ### STUB
    # return None  # TODO 3: checksum the file and record done/failed in the row, with your own connection
    ### END


# --- the app ------------------------------------------------------------------------

UPLOAD_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD_NAME],
    "properties": {FIELD_NAME: {"type": "string", "format": "binary"}}}}}}}


def create_app(upload_dir: str | Path, db_path: str | Path, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               checksum: Callable[[Path], str] | None = None) -> FastAPI:
    """The lesson's app. Files go to ``upload_dir``, the log to the SQLite file ``db_path``.

    ``checksum`` is the background step (default ``sha256_of_file``; tests pass a slow or a failing one).
    """
    checksum = checksum or sha256_of_file
    upload_dir = Path(upload_dir).resolve()
    upload_dir.mkdir(parents=True, exist_ok=True)
    init_db(db_path)
    app = FastAPI(title="Lesson 2: uploads done right")

    # No UploadFile parameter: FastAPI would parse (and spool) the whole body before
    # this function runs. Reading request.stream() ourselves lets us stop at the limit.
    # It calls your functions from above in turn: display_name, storage_path, save_stream,
    # and schedules finish_upload.
    @app.post("/uploads", status_code=202, openapi_extra=UPLOAD_FORM)
    async def upload(request: Request, background_tasks: BackgroundTasks):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes + MULTIPART_ALLOWANCE_BYTES:
            raise too_large(max_upload_bytes)  # refused before a byte of the body is read
        client_filename, chunks = await open_file_field(request, FIELD_NAME)
        original_name = display_name(client_filename)
        upload_id = uuid.uuid4().hex
        path = storage_path(upload_dir, upload_id)
        size = await save_stream(chunks, path, max_upload_bytes)
        try:
            await run_in_threadpool(record_pending, db_path, upload_id, original_name, size)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        background_tasks.add_task(finish_upload, db_path, upload_id, path, checksum)
        return {"id": upload_id, "status": "pending", "original_name": original_name, "size": size,
                "status_url": f"/uploads/{upload_id}"}

    @app.get("/uploads/{upload_id}")
    def upload_status(upload_id: str):
        """A plain ``def``: FastAPI runs it in a worker thread, so the blocking SQLite read is fine.

        TODO 4: with your own ``connect(db_path)``, read the row ``upload_id`` and return
        it as a dict with exactly the keys in ``COLUMNS``. For an id with no row, raise
        ``HTTPException(404, ...)`` with a message that names the id. The id comes from
        the URL, so anyone can send ``x' OR '1'='1``: pass it as a query parameter,
        never pasted into the SQL text.
        """
        ### SOLUTION
        with closing(connect(db_path)) as db:
            row = db.execute("SELECT id, status, original_name, size, sha256, error FROM uploads WHERE id = ?",
                             (upload_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"No upload with id {upload_id!r}.")
        return dict(row)
        ### STUB
        # raise HTTPException(501, "TODO 4: read the upload's row and return its status and metadata")
        ### END

    @app.get("/ping")
    async def ping():
        return {"pong": True}

    return app


# --- given: SQLite, the checksum, the 413 (you need not change anything below) -------

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id            TEXT PRIMARY KEY,
    original_name TEXT NOT NULL,
    size          INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',  -- pending | done | failed
    sha256        TEXT,
    error         TEXT,
    created_at    REAL NOT NULL
)
"""
# A multipart body is the file plus boundaries and part headers. A Content-Length
# above limit + this allowance cannot hold an acceptable file: refuse it unread.
MULTIPART_ALLOWANCE_BYTES = 16 * 1024


def connect(db_path: str | Path) -> sqlite3.Connection:
    """A NEW connection to the database file. sqlite3 ties a connection to the
    thread that made it, so every thread (endpoint, background task) opens its own.
    ``timeout`` lets concurrent writers wait for the lock instead of failing.
    Rows come back as ``sqlite3.Row``: ``dict(row)`` gives column -> value.
    Used as ``with closing(connect(path)) as db, db:``, it commits (or rolls back)
    and then closes."""
    db = sqlite3.connect(db_path, timeout=10)
    db.row_factory = sqlite3.Row
    return db


def init_db(db_path: str | Path) -> None:
    with closing(connect(db_path)) as db, db:
        db.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        db.execute(SCHEMA)


def record_pending(db_path: str | Path, upload_id: str, original_name: str, size: int) -> None:
    with closing(connect(db_path)) as db, db:
        db.execute("INSERT INTO uploads (id, original_name, size, status, created_at) VALUES (?, ?, ?, 'pending', ?)",
                   (upload_id, original_name, size, time.time()))


def sha256_of_file(path: str | Path, chunk_size: int = MiB) -> str:
    """The file's SHA-256, read a chunk at a time so memory stays flat for any size."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"The file is larger than the limit of {max_bytes} bytes.")
