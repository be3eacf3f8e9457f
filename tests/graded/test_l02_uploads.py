"""Graded checks for lessons/l02_uploads.py, run against a real uvicorn server in tmp folders."""

import asyncio
import hashlib
import sqlite3
import threading
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path, PosixPath

import httpx
import pytest
from fastapi import HTTPException

from course.grading import check
from course.server import captured_log
from course.uploads import MiB, chunked, multipart_body, raw_multipart
from course.waiting import wait_until

WAIT = 10.0  # upper bound for background work that takes milliseconds, on a busy 2-core machine
DB_FILES = {"log.db", "log.db-wal", "log.db-shm", "log.db-journal"}
FINISHED = ("done", "failed")


@pytest.fixture
def root(tmp_path):
    """tmp_path/srv/app/uploads is the upload folder: '../..' from there is still inside tmp_path."""
    (tmp_path / "srv" / "app").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def start(lesson, live_server, root):
    """start(**create_app_kwargs) -> an httpx.Client for a live server running the lesson's app."""
    clients = []

    def start_app(**kwargs):
        app = lesson.create_app(root / "srv" / "app" / "uploads", root / "log.db", **kwargs)
        client = httpx.Client(base_url=live_server(app).url, timeout=WAIT)
        clients.append(client)
        return client

    yield start_app
    for client in clients:
        client.close()


def upload_dir(root: Path) -> Path:
    return root / "srv" / "app" / "uploads"


def post_file(client: httpx.Client, filename: str, content: bytes) -> httpx.Response:
    body, headers = raw_multipart(filename, content)
    return client.post("/uploads", content=body, headers=headers)


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def db_rows(root: Path) -> list[dict]:
    db_path = root / "log.db"
    if not db_path.exists():
        return []
    with closing(sqlite3.connect(db_path, timeout=WAIT)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM uploads")]


def wait_rows_finished(root: Path, count: int, timeout: float = WAIT) -> list[dict]:
    # The rows are written by the server's background tasks: nothing to wait on but the file.
    wait_until(lambda: sum(row["status"] in FINISHED for row in db_rows(root)) >= count, timeout, interval=0.05)
    return db_rows(root)


def wait_status(client: httpx.Client, upload_id: str, timeout: float = WAIT) -> dict:
    def status() -> dict:
        response = client.get(f"/uploads/{upload_id}")
        assert response.status_code == 200, f"GET /uploads/{upload_id}: {response.status_code} {response.text}"
        return response.json()

    wait_until(lambda: status().get("status") in FINISHED, timeout, interval=0.05)
    return status()


def assert_accepted(response: httpx.Response) -> str:
    assert response.status_code == 202, f"status {response.status_code}: {response.text}"
    upload_id = response.json().get("id")
    assert upload_id, f"no id in {response.json()}"
    return upload_id


async def pieces(count: int, size: int, pulled: list | None = None, then: BaseException | None = None):
    """An async chunk source like the endpoint's: ``count`` pieces of ``size`` bytes, counted in
    ``pulled``; then it raises ``then`` (a client gone, say), if given."""
    block = b"p" * size
    for _ in range(count):
        if pulled is not None:
            pulled.append(1)
        await asyncio.sleep(0)  # like a socket read: the event loop runs other tasks in between
        yield block
    if then is not None:
        raise then


HOSTILE = ["../escape.txt", "../../pwned.txt", "./../dot.txt", "..\\windows.txt", "C:\\Users\\me\\cat.png",
           "subdir/", "..", "evil\x00name.txt"]


# --- TODO 1 -----------------------------------------------------------------------------

@check(task=1, points=2, hint="TODO 1a: the client's filename is only a label: keep what follows the last "
       "separator of ANY operating system, drop invisible control characters, fall back to a fixed name when "
       "nothing usable is left, cut it to the maximum length, and refuse an empty (or blank) name with a 422.")
def test_task1_display_name_keeps_only_a_harmless_name(lesson):
    expected = {"../../etc/passwd": "passwd", "C:\\Users\\me\\cat.png": "cat.png", "report.pdf": "report.pdf",
                "evil\x00name\n.txt": "evilname.txt", "\u202egnp.exe": "gnp.exe", "..": "unnamed",
                "uploads/..": "unnamed", "a/": "unnamed", " spaced .txt ": "spaced .txt"}
    for raw, wanted in expected.items():
        got = lesson.display_name(raw)
        assert got == wanted, f"display_name({raw!r}) gave {got!r}, expected {wanted!r}"
    assert len(lesson.display_name("x" * 1000)) == 255, "a 1000-character name must be cut to 255"
    for empty in ("", "   "):
        with pytest.raises(HTTPException) as refused:
            lesson.display_name(empty)
        assert refused.value.status_code == 422, f"{empty!r} should be a 422, got {refused.value.status_code}"


@check(task=1, points=1, hint="TODO 1b: the path comes from the upload id alone, and only an id of exactly "
       "the expected form is accepted: anything else (slashes, dots, extra characters before or after) raises "
       "ValueError, whatever the caller passes.")
def test_task1_storage_path_is_chosen_by_the_server(lesson, tmp_path):
    upload_id = uuid.uuid4().hex
    assert lesson.storage_path(tmp_path, upload_id) == tmp_path / f"{upload_id}.bin"
    for bad in ("../../etc/passwd", f"{upload_id}/../../x", f"../{upload_id}", upload_id.upper(), upload_id[:-1],
                upload_id + "\n", ""):
        with pytest.raises(ValueError):
            path = lesson.storage_path(tmp_path, bad)
            pytest.fail(f"storage_path accepted the id {bad!r} and gave {path}")


@check(task=1, points=3, hint="TODO 1 and 2: the bytes must land at the path the server chose from the upload id, "
       "whatever filename the client sent; the client's name is only metadata. Every upload complete, once.")
def test_task1_hostile_filenames_never_escape_the_upload_folder(start, root):
    client = start()
    absolute = root / "absolute.txt"
    sent = {}
    for index, name in enumerate([*HOSTILE, str(absolute)]):
        content = f"upload {index} named {name!r}".encode()
        upload_id = assert_accepted(post_file(client, name, content))
        sent[upload_id] = content
    folder = upload_dir(root)
    stray = {path for path in files_under(root) if path.parent != folder and path.name not in DB_FILES}
    assert not stray, f"files written outside the upload folder: {sorted(map(str, stray))}"
    stored = {path.read_bytes() for path in files_under(folder)}
    assert stored == set(sent.values()), "every upload should be stored, complete, once, inside the upload folder"
    names = {path.name for path in files_under(folder)}
    assert all(any(upload_id in name for upload_id in sent) for name in names), \
        f"stored names should come from the upload ids, not the client: {sorted(names)}"


@check(task=1, points=1, hint="TODO 1a: an empty filename (what a browser sends when no file was picked) must be "
       "refused with a 422 whose message says the filename is empty; nothing may be written for it.")
def test_task1_empty_filename_or_missing_field_gets_a_clear_4xx(start, root):
    client = start()
    response = post_file(client, "", b"some content")
    assert response.status_code == 422, f"empty filename: status {response.status_code}: {response.text}"
    assert "filename" in str(response.json().get("detail", "")).lower(), \
        f"the message should say what is wrong with the filename: {response.text}"
    response = client.post("/uploads", files={"document": ("a.txt", b"x")})
    assert response.status_code == 422, f"no field named 'file': status {response.status_code}: {response.text}"
    assert "'file'" in response.text, f"the message should name the missing field: {response.text}"
    assert not files_under(upload_dir(root)), "a refused upload must leave no file"


# --- TODO 2 -----------------------------------------------------------------------------

@check(task=2, points=3, hint="TODO 2: the server must never hold the upload: each chunk goes to the file before "
       "the next one is read. Collecting the chunks (in a list, or by adding bytes together) and writing them at "
       "the end makes the server's memory grow with the file size.",
       nudge="The check sends a 48 MiB file and measures the Python memory the server allocates meanwhile.")
def test_task2_a_large_upload_never_sits_in_server_memory(start, root):
    size = 48 * MiB
    client = start(max_upload_bytes=2 * size)
    assert_accepted(post_file(client, "warm-up.bin", b"w" * 1024))
    headers, body = multipart_body(size, filename="large.bin")
    tracemalloc.start()
    try:
        response = client.post("/uploads", content=body, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    upload_id = assert_accepted(response)
    stored = upload_dir(root) / f"{upload_id}.bin"
    assert stored.exists() and stored.stat().st_size == size, "the large upload should be stored, complete"
    assert peak < size / 4, (f"the server allocated {peak / MiB:.0f} MiB of Python memory for a {size / MiB:.0f} MiB "
                             "upload: the file sat in memory before it reached the disk")


@check(task=2, points=3, hint="TODO 2: count the bytes as they arrive. One byte over the limit is a 413, a file of "
       "exactly the limit is fine, and a refused upload leaves no partial file, whether or not the client sent a "
       "Content-Length (a chunked upload has none, so counting is what counts).")
def test_task2_over_the_limit_gets_413_and_leaves_no_file(start, root):
    limit = 64 * 1024
    client = start(max_upload_bytes=limit)
    exact = assert_accepted(post_file(client, "exact.bin", b"e" * limit))
    assert client.get("/ping").status_code == 200
    response = post_file(client, "one-too-many.bin", b"o" * (limit + 1))
    assert response.status_code == 413, f"{limit + 1} bytes with a limit of {limit}: {response.status_code} {response.text}"
    body, headers = raw_multipart("chunked.bin", b"c" * (4 * limit))
    response = client.post("/uploads", content=chunked(body, 8192), headers=headers)
    assert response.status_code == 413, f"a chunked upload over the limit: {response.status_code} {response.text}"
    left = files_under(upload_dir(root))
    assert len(left) == 1 and exact in next(iter(left)).name, \
        f"only the accepted file should remain, found {sorted(p.name for p in left)}"
    assert next(iter(left)).stat().st_size == limit, "the accepted file should be complete"
    assert client.get("/ping").status_code == 200, "the server should keep serving after a 413"


@check(task=2, points=1, hint="TODO 2: stop at the first chunk that takes the count over the limit: do not read "
       "(or write) the rest of an upload you are going to refuse anyway.")
def test_task2_stops_reading_at_the_first_chunk_over_the_limit(lesson, tmp_path):
    pulled = []
    destination = tmp_path / "over.bin"
    with pytest.raises(HTTPException) as refused:
        asyncio.run(lesson.save_stream(pieces(100, 16 * 1024, pulled), destination, 64 * 1024))
    assert refused.value.status_code == 413, f"expected a 413, got {refused.value.status_code}"
    assert len(pulled) <= 5, f"a 64 KiB limit and 16 KiB chunks: it read {len(pulled)} chunks instead of stopping at 5"
    assert not destination.exists(), "the refused upload left its partial file"


@check(task=2, points=2, hint="TODO 2: whatever ends the upload early (the client disconnects, the disk fails, the "
       "task is cancelled, which is not an Exception) must delete the partial file and let the error go on. A file "
       "that was already there must be refused, not overwritten (and not deleted).")
def test_task2_any_failure_or_cancellation_leaves_no_partial_file(lesson, tmp_path):
    gone = tmp_path / "client-gone.bin"
    with pytest.raises(OSError, match="client went away"):
        asyncio.run(lesson.save_stream(pieces(3, 1024, then=OSError("client went away")), gone, MiB))
    assert not gone.exists(), "the client went away mid-upload, and its partial file stayed"

    cancelled = tmp_path / "cancelled.bin"

    async def cancel_midway():
        stalled = asyncio.Event()

        async def slow_client():
            yield b"first part"
            stalled.set()
            await asyncio.sleep(60)  # the client stalls; the server gives up (a timeout, a shutdown)
            yield b"never"

        task = asyncio.create_task(lesson.save_stream(slow_client(), cancelled, MiB))
        async with asyncio.timeout(5):
            await stalled.wait()
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancel_midway())
    assert not cancelled.exists(), "the upload was cancelled mid-way, and its partial file stayed"

    existing = tmp_path / "existing.bin"
    existing.write_bytes(b"somebody else's file")
    with pytest.raises(FileExistsError):
        asyncio.run(lesson.save_stream(pieces(2, 1024), existing, MiB))
    assert existing.exists() and existing.read_bytes() == b"somebody else's file", \
        "save_stream overwrote (or deleted) a file that was already there"


class SlowDisk:
    """A file whose every write takes ``delay`` seconds of blocking time, like a slow or busy disk."""

    def __init__(self, real, delay):
        self.real, self.delay = real, delay

    def write(self, data):
        time.sleep(self.delay)
        return self.real.write(data)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.real.close()


@check(task=2, points=1, hint="TODO 2: a write to disk is a blocking call. Made directly in the coroutine, it stops "
       "the event loop (every other request waits) for as long as the disk takes: hand each write to a worker "
       "thread and await it.")
def test_task2_a_slow_disk_does_not_stall_the_event_loop(lesson, tmp_path, monkeypatch):
    delay = 0.4

    class SlowPath(PosixPath):
        def open(self, *args, **kwargs):
            return SlowDisk(super().open(*args, **kwargs), delay)

    real_open = open
    monkeypatch.setattr(lesson, "open", lambda *a, **k: SlowDisk(real_open(*a, **k), delay), raising=False)

    async def measure():
        gaps, done = [], asyncio.Event()

        async def ticker():
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)  # the ticker is running
        try:
            size = await lesson.save_stream(pieces(3, 1024), SlowPath(tmp_path / "slow.bin"), MiB)
        finally:
            done.set()
            await ticking
        return size, max(gaps, default=0.0)

    size, worst = asyncio.run(measure())
    assert size == 3 * 1024, f"save_stream returned {size}, expected {3 * 1024}"
    assert worst < delay / 2, f"the event loop stood still for {worst:.2f} s while a {delay} s write ran"


# --- TODO 3 -----------------------------------------------------------------------------

@check(task=3, points=3, hint="TODO 3: finish_upload runs in a worker thread: it needs a database connection of "
       "its own, made there, and its change must be committed before the connection closes, or the row stays "
       "'pending'.")
def test_task3_forty_concurrent_uploads_give_forty_rows_and_forty_files(start, root):
    client = start()
    contents = {f"file-{index}.txt": f"{index} {uuid.uuid4().hex}".encode() * 200 for index in range(40)}

    def send(item):
        name, content = item
        body, headers = raw_multipart(name, content)
        return httpx.post(f"{client.base_url}/uploads", content=body, headers=headers, timeout=WAIT)

    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(send, contents.items()))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [202] * 40, f"status codes: {statuses}"
    rows = wait_rows_finished(root, 40)
    done = {row["original_name"]: row for row in rows if row["status"] == "done"}
    assert len(rows) == 40 and len(done) == 40, \
        f"{len(rows)} rows, {len(done)} done; not done: {[r for r in rows if r['status'] != 'done'][:3]}"
    for name, content in contents.items():
        assert done[name]["sha256"] == hashlib.sha256(content).hexdigest(), f"wrong sha256 for {name}"
    assert len(files_under(upload_dir(root))) == 40, "40 uploads should leave 40 files"


def broken_checksum(path):
    raise OSError("can't reach the checksum service")  # a quote in the message, as real messages have


@check(task=3, points=2, hint="TODO 3: when the checksum raises, the row must say 'failed' with an error of the "
       "form '<ExceptionName>: <message>', and GET /uploads/{id} must report it. The message is text from "
       "anywhere (quotes included): it goes to SQLite as a parameter, never pasted into the SQL.")
def test_task3_a_failing_background_step_shows_as_failed(start, root):
    client = start(checksum=broken_checksum)
    upload_id = assert_accepted(post_file(client, "doomed.txt", b"will fail"))
    rows = {row["id"]: row for row in wait_rows_finished(root, 1)}
    row = rows.get(upload_id, {})
    assert row.get("status") == "failed", f"the row should say 'failed': {row}"
    assert row.get("error") == "OSError: can't reach the checksum service", f"the error should read " \
        f"\"OSError: can't reach the checksum service\": {row}"
    assert client.get("/ping").status_code == 200, "the server should keep serving after a failed task"


@check(task=3, points=1, hint="TODO 3: a failure in the background step is logged, with its traceback, by the "
       "lesson's logger, and then it is over: raised again, it would reach uvicorn as an error of the request, "
       "and any task after it would never run.")
def test_task3_the_failure_is_logged_by_the_lesson_not_raised(start, root, lesson):
    client = start(checksum=broken_checksum)
    with captured_log(lesson.log.name) as lesson_log, captured_log("uvicorn.error") as uvicorn_log:
        upload_id = assert_accepted(post_file(client, "doomed.txt", b"will fail"))
        wait_rows_finished(root, 1)
        lesson_log.wait(1, timeout=WAIT)
        time.sleep(0.2)  # anything uvicorn logs comes right after the task ends
    assert any(record.exc_info and isinstance(record.exc_info[1], OSError) for record in lesson_log), \
        f"the lesson's logger {lesson.log.name!r} logged no OSError with its traceback for upload {upload_id}"
    assert not list(uvicorn_log), f"the exception reached uvicorn: {[r.getMessage() for r in uvicorn_log]}"


@check(task=3, points=2, hint="TODO 3: the checksum and the row update belong in finish_upload, which runs after the "
       "202 has gone out: the response time must not depend on how long that work takes, and the row must end up "
       "'done' with the file's SHA-256.")
def test_task3_response_time_does_not_grow_with_the_background_work(start, root, lesson):
    work_seconds = 1.5

    def slow_checksum(path):
        time.sleep(work_seconds)
        return lesson.sha256_of_file(path)

    client = start(checksum=slow_checksum)
    content = b"x" * 100_000
    post_file(client, "warm-up.txt", b"warm")
    started = time.perf_counter()
    upload_id = assert_accepted(post_file(client, "slow.txt", content))
    elapsed = time.perf_counter() - started
    assert elapsed < work_seconds / 2, f"the 202 took {elapsed:.2f} s for {work_seconds} s of background work"
    rows = {row["id"]: row for row in wait_rows_finished(root, 2, timeout=WAIT + 2 * work_seconds)}
    assert rows.get(upload_id, {}).get("status") == "done", f"the background work should finish: {rows.get(upload_id)}"
    assert rows[upload_id]["sha256"] == hashlib.sha256(content).hexdigest()


# --- TODO 4 -----------------------------------------------------------------------------

@check(task=4, points=2, hint="TODO 4: read the row by id with a connection of your own and return exactly the "
       "columns listed in COLUMNS; an id with no row is a 404 whose message names the id.")
def test_task4_status_reports_metadata_and_404_for_unknown_ids(start, root, lesson):
    client = start()
    content = b"%PDF-1.7 pretend report" * 50
    upload_id = assert_accepted(post_file(client, "../../report.pdf", content))
    status = wait_status(client, upload_id)
    expected = {"id": upload_id, "status": "done", "original_name": "report.pdf", "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(), "error": None}
    assert status == expected, f"GET /uploads/{upload_id} gave {status}, expected the keys {lesson.COLUMNS}: {expected}"
    unknown = uuid.uuid4().hex
    response = client.get(f"/uploads/{unknown}")
    assert response.status_code == 404, f"unknown id: {response.status_code} {response.text}"
    assert unknown in response.text, f"the 404 message should name the id: {response.text}"


@check(task=4, points=2, hint="TODO 4: the id in the URL is text chosen by whoever sends the request. Pasted into "
       "the SQL, a quote in it changes the query: it can match rows that are not the caller's or break the "
       "statement (a 500). Let SQLite take the id as a parameter.")
def test_task4_a_crafted_upload_id_cannot_break_or_leak(start, root):
    client = start()
    secret = assert_accepted(post_file(client, "somebody-elses.txt", b"private"))
    wait_rows_finished(root, 1)
    for crafted in ("x' OR '1'='1", "x' OR 1=1 --", "it's", "x' UNION SELECT id, status, original_name, size, "
                    "sha256, error FROM uploads --"):
        response = client.get(f"/uploads/{crafted}")
        assert response.status_code == 404, \
            f"GET /uploads/{crafted!r}: {response.status_code} {response.text[:200]} (expected a 404: no such upload)"
        assert secret not in response.text and "somebody-elses" not in response.text, \
            f"GET /uploads/{crafted!r} leaked another upload: {response.text[:200]}"
