"""Graded checks for lessons/l02_uploads.py, run against a real uvicorn server in tmp folders."""

import hashlib
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from fastapi import HTTPException

from course.grading import check
from course.upload_tools import wait_until

WAIT = 10.0  # upper bound for background work that takes milliseconds, on a busy 2-core machine
BOUNDARY = "graded-boundary"
DB_FILES = {"log.db", "log.db-wal", "log.db-shm", "log.db-journal"}


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


def raw_multipart(filename: str, content: bytes, field: str = "file") -> tuple[bytes, dict]:
    """A body built by hand, so the filename reaches the server exactly as written."""
    body = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


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


FINISHED = ("done", "failed")


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


HOSTILE = ["../escape.txt", "../../pwned.txt", "./../dot.txt", "..\\windows.txt", "C:\\Users\\me\\cat.png",
           "subdir/", "..", "evil\x00name.txt"]


@check(points=2, hint="TODO 1a: display_name must reject an empty name with HTTPException(422, ...), keep only "
       "what follows the last '/' or '\\', drop control characters (unicodedata category 'C...'), and fall "
       "back to 'unnamed' when nothing (or '.'/'..') is left. The result is shown and stored, never a path.")
def test_task1_display_name_keeps_only_a_harmless_name(lesson):
    expected = {"../../etc/passwd": "passwd", "C:\\Users\\me\\cat.png": "cat.png", "report.pdf": "report.pdf",
                "evil\x00name\n.txt": "evilname.txt", "..": "unnamed", "uploads/..": "unnamed", "a/": "unnamed"}
    for raw, wanted in expected.items():
        got = lesson.display_name(raw)
        assert got == wanted, f"display_name({raw!r}) gave {got!r}, expected {wanted!r}"
    assert len(lesson.display_name("x" * 1000)) <= 255, "a 1000-character name must be cut to 255"
    with pytest.raises(HTTPException) as refused:
        lesson.display_name("")
    assert refused.value.status_code == 422, f"an empty filename should be a 422, got {refused.value.status_code}"


@check(points=3, hint="TODO 1b and 2: the bytes must land at storage_path(upload_dir, upload_id), a name the "
       "server chose, whatever filename the client sent; the client's name is only metadata. save_stream "
       "must write every chunk to that path.")
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


@check(points=1, hint="TODO 1a: an empty filename (what a browser sends when no file was picked) must be refused "
       "with a 422 whose message says the filename is empty; nothing may be written for it.")
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


@check(points=3, hint="TODO 2: count the bytes as they arrive; as soon as the count passes max_bytes raise "
       "too_large(max_bytes), and on ANY exception delete the partial file before re-raising. A file of "
       "exactly max_bytes is fine. Content-Length can be absent (chunked uploads), so counting is what counts.")
def test_task2_over_the_limit_gets_413_and_leaves_no_file(start, root):
    limit = 64 * 1024
    client = start(max_upload_bytes=limit)
    exact = assert_accepted(post_file(client, "exact.bin", b"e" * limit))
    assert client.get("/ping").status_code == 200
    response = post_file(client, "one-too-many.bin", b"o" * (limit + 1))
    assert response.status_code == 413, f"{limit + 1} bytes with a limit of {limit}: {response.status_code} {response.text}"

    body, headers = raw_multipart("chunked.bin", b"c" * (4 * limit))

    def without_length():  # a generator body: httpx sends it chunked, without Content-Length
        for start_at in range(0, len(body), 8192):
            yield body[start_at:start_at + 8192]

    response = client.post("/uploads", content=without_length(), headers=headers)
    assert response.status_code == 413, f"a chunked upload over the limit: {response.status_code} {response.text}"
    left = files_under(upload_dir(root))
    assert len(left) == 1 and exact in next(iter(left)).name, \
        f"only the accepted file should remain, found {sorted(p.name for p in left)}"
    assert next(iter(left)).stat().st_size == limit, "the accepted file should be complete"
    assert client.get("/ping").status_code == 200, "the server should keep serving after a 413"


@check(points=3, hint="TODO 3: finish_upload runs in a worker thread: open your own connection there with "
       "connect(db_path), update the row (status 'done', sha256) and commit, then close it. A connection "
       "made in another thread raises ProgrammingError and the row is never updated.")
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


@check(points=2, hint="TODO 3 and 4: when checksum() raises, finish_upload must catch it, log it and record "
       "status 'failed' with error '<ExceptionName>: <message>' (no re-raise: nobody is there to catch it); "
       "GET /uploads/{id} must then report it.")
def test_task3_a_failing_background_step_shows_as_failed(start, root):
    def broken_checksum(path):
        raise OSError("the checksum service is down")

    client = start(checksum=broken_checksum)
    upload_id = assert_accepted(post_file(client, "doomed.txt", b"will fail"))
    status = wait_status(client, upload_id)
    assert status.get("status") == "failed", f"the status should say 'failed': {status}"
    assert "OSError" in (status.get("error") or ""), f"the error should name the exception: {status}"
    assert client.get("/ping").status_code == 200, "the server should keep serving after a failed task"
    second = assert_accepted(post_file(client, "next.txt", b"next"))
    assert wait_status(client, second).get("status") == "failed"


@check(points=2, hint="TODO 3: the checksum and the row update belong in finish_upload, which the endpoint "
       "schedules with background_tasks.add_task; the 202 must go out before that work runs, so its time "
       "does not depend on how long the work takes.")
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


@check(points=2, hint="TODO 4: in upload_status, SELECT the row by id with your own connection and return it "
       "as a dict with the keys in COLUMNS; for an unknown id raise HTTPException(404, ...) naming the id.")
def test_task4_status_reports_metadata_and_404_for_unknown_ids(start, root):
    client = start()
    content = b"%PDF-1.7 pretend report" * 50
    upload_id = assert_accepted(post_file(client, "../../report.pdf", content))
    status = wait_status(client, upload_id)
    expected = {"id": upload_id, "status": "done", "original_name": "report.pdf", "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest()}
    assert {key: status.get(key) for key in expected} == expected, f"GET /uploads/{upload_id} gave {status}"
    unknown = uuid.uuid4().hex
    response = client.get(f"/uploads/{unknown}")
    assert response.status_code == 404, f"unknown id: {response.status_code} {response.text}"
    assert unknown in response.text, f"the 404 message should name the id: {response.text}"
