"""Graded checks for lessons/l07_capstone.py and lessons/l07_capstone.js: the capstone, whole.

One private Redis, one app under ``uvicorn --workers 2`` (a child process), one queue worker and
one headless Chromium (Debian's, through Playwright) are shared by the checks of this file. The
checks without a browser come first; the browser checks need ``/usr/bin/chromium``: without it they
are skipped and earn no points (in CI they fail instead).
"""

import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, HTMLResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from course import browser as chromium_browser
from course.children import serve_in_child, start_child
from course.grading import check
from course.waiting import wait_until
from course.wsclients import ws_url

STREAM = "course:l06:feed"  # lesson 6's stream: the capstone announces through lesson 6's relay
MiB = 1024 * 1024
WAIT = 15.0  # seconds; every wait is bounded, a stub run waits this out at most a few times


# --- the shared stack ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(lesson, redis_server):
    """Redis (emptied), the app with 2 workers, one queue worker; both web workers up."""
    with redis_server.client() as client:
        client.flushall()
    folder = Path(tempfile.mkdtemp(prefix="course-l07-"))
    upload_dir, db_path = folder / "uploads", folder / "uploads.db"
    server = serve_in_child(f"{lesson.__name__}:create_app", name="l07-graded", workers=2,
                            factory_kwargs={"upload_dir": str(upload_dir), "db_path": str(db_path),
                                            "redis_url": redis_server.url},
                            timeout_graceful_shutdown=1)
    worker = start_child(lesson.worker_command(redis_server.url, db_path, upload_dir), name="l07-graded-queue")
    pids = set()

    def both_up():
        try:
            pids.add(httpx.get(f"{server.url}/worker", headers={"Connection": "close"}, timeout=2).json()["pid"])
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        return len(pids) >= 2

    if not wait_until(both_up, 30, interval=0.05):
        pytest.fail(f"the app's two workers did not both answer GET /worker:\n{server.log_text(3000)}", pytrace=False)
    yield {"server": server, "worker": worker, "redis_url": redis_server.url, "upload_dir": upload_dir}
    worker.stop(timeout=3)
    server.stop(timeout=3)


def host_of(server):
    return server.url.removeprefix("http://")


def session_cookie(server) -> str:
    response = httpx.get(server.url + "/", timeout=5)
    assert response.status_code == 200, f"GET / answered {response.status_code}"
    cookie = response.cookies.get("session")
    assert cookie, f"GET / set no session cookie (Set-Cookie: {response.headers.get('set-cookie')})"
    return cookie


def handshake(server, origin="same", cookie=None):
    """Open /ws like a page would; returns ("accepted", first message) or ("refused", HTTP status)."""
    origin = server.url if origin == "same" else origin
    headers = {"Cookie": f"session={cookie}"} if cookie is not None else {}
    try:
        with connect(ws_url(server, "/ws"), origin=origin, additional_headers=headers,
                     open_timeout=5) as ws:
            return "accepted", ws.recv(timeout=5)
    except InvalidStatus as exc:
        return "refused", exc.response.status_code


def entry(name: str, upload: str = "test") -> dict:
    """A feed entry as the capstone's job writes it: a processed upload."""
    return {"text": json.dumps({"kind": "processed", "upload": upload, "name": name, "size": 1, "sha256": "0" * 64})}


# --- TODO 1 and 2: who may open the feed ------------------------------------------------------------------

@check(task=1, points=3, hint="TODO 1: the feed accepts the page's own origin (scheme, then exactly the Host "
                              "the request came to) and lesson 3's list, nothing else: another port, another "
                              "host name for the same machine, a longer name that starts the same, a path, "
                              "or no Origin at all are refused before accept (403).",
       nudge="Take the Origin apart and compare its host-and-port part with the Host header as text; the "
             "sentinel entry is not an origin, so leave it out when you ask lesson 3's rule.")
def test_task1_only_the_pages_own_origin_opens_the_feed(stack):
    server = stack["server"]
    cookie = session_cookie(server)
    port = server.port
    outcome, first = handshake(server, cookie=cookie)
    assert outcome == "accepted", f"the page's own origin {server.url} was refused ({first})"
    assert "hello" in json.loads(first), f"the first message should be the hello, got {first}"
    for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port}.evil.example",
                   f"http://127.0.0.1:{port}/", f"https://127.0.0.1:{port}@evil.example", "null", None):
        outcome, status = handshake(server, origin=origin, cookie=cookie)
        assert outcome == "refused", f"a handshake with Origin {origin!r} was accepted"
        assert status == 403, f"Origin {origin!r}: refused with {status}, expected 403 (close before accept)"


@check(task=2, points=3, hint="TODO 2: the feed opens only with a session this app created (the cookie that "
                              "loading the page sets). A handshake without the cookie, or with a value the app "
                              "never handed out, is refused; the page's own cookie is accepted.",
       nudge="The cookie's value is only a name; whether it means anything is in Redis, under the key the "
             "Sessions class builds from it.")
def test_task2_the_feed_needs_the_pages_session(stack):
    server = stack["server"]
    cookie = session_cookie(server)
    for label, value in (("no cookie", None), ("an empty cookie", ""), ("a made-up cookie", "made-up-by-a-script")):
        outcome, status = handshake(server, cookie=value)
        assert outcome == "refused", f"a handshake with {label} was accepted"
    outcome, first = handshake(server, cookie=cookie)
    assert outcome == "accepted", f"the page's own session cookie was refused ({first})"


# --- TODO 3: the job announces once ----------------------------------------------------------------------

def feed_texts(redis_url):
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        return [json.loads(fields["text"]) for _, fields in client.xrange(STREAM)
                if fields["text"].startswith("{")]


@check(task=3, points=3, hint="TODO 3: an upload, once processed, adds exactly one 'processed' entry (with the "
                              "file's name) to lesson 6's stream, which every page's feed shows; the job's "
                              "progress entries come before it.",
       nudge="Add the entry and mark the upload as announced in one transaction, and only when the mark is not "
             "there yet.")
def test_task3_an_upload_is_processed_and_announced_once(stack):
    server = stack["server"]
    cookie = session_cookie(server)
    data = os.urandom(MiB)
    response = httpx.post(server.url + "/uploads", files={"file": ("report-task3.bin", data)},
                          cookies={"session": cookie}, timeout=10)
    assert response.status_code == 202, f"POST /uploads answered {response.status_code}: {response.text[:200]}"
    upload_id = response.json()["id"]

    def processed():
        return [e for e in feed_texts(stack["redis_url"]) if e.get("kind") == "processed" and e.get("upload") == upload_id]

    assert wait_until(processed, WAIT, interval=0.1), "no 'processed' entry reached the feed's stream"
    entries = [e for e in feed_texts(stack["redis_url"]) if e.get("upload") == upload_id]
    kinds = [e["kind"] for e in entries]
    assert "progress" in kinds and kinds.index("progress") < kinds.index("processed"), f"entries: {kinds}"
    assert processed()[0]["name"] == "report-task3.bin"
    status = httpx.get(f"{server.url}/uploads/{upload_id}", timeout=5).json()
    assert status["status"] == "done", status
    time.sleep(0.3)
    assert len(processed()) == 1, f"{len(processed())} 'processed' entries for one upload"


@check(task=3, points=3, hint="TODO 3: the same job run twice, or twice at the same moment by two workers, "
                              "must add ONE feed line: checking first and adding afterwards lets both runs see "
                              "'not announced yet'.",
       nudge="WATCH the upload's key, read the mark, then MULTI: the XADD and the mark together; a WatchError "
             "means another run was quicker: look again.")
def test_task3_an_upload_announced_by_two_runs_at_once_appears_once(stack, lesson):
    async def scenario():
        # Five runs, each with its own connection already open (five workers), start at the same moment.
        clients = [aioredis.Redis.from_url(stack["redis_url"], decode_responses=True) for _ in range(5)]
        try:
            await asyncio.gather(*(client.ping() for client in clients))
            await clients[0].hset("capstone:upload:twice", mapping={"name": "twice.bin", "size": 1, "status": "done"})
            text = json.dumps({"kind": "processed", "upload": "twice", "name": "twice.bin", "size": 1,
                               "sha256": "0" * 64})
            results = await asyncio.gather(*(lesson.announce_once(client, "twice", text) for client in clients))
            again = await lesson.announce_once(clients[0], "twice", text)
            return results, again
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))

    results, again = asyncio.run(asyncio.wait_for(scenario(), 20))
    added = [r for r in results if r]
    lines = [e for e in feed_texts(stack["redis_url"]) if e.get("upload") == "twice"]
    assert len(lines) == 1, f"5 runs at once added {len(lines)} lines for one upload"
    assert len(added) == 1 and again is None, f"announce_once returned {results} and then {again!r}"


# --- the browser ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(stack):
    chromium_browser.require()
    with chromium_browser.chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def pages(browser, stack):
    """Pages A and B of one user (one context: one cookie jar), both live; their console errors."""
    context = browser.new_context()
    errors = chromium_browser.ConsoleErrors()
    opened = {}
    sockets = {"A": [], "B": []}
    for name in ("A", "B"):
        page = context.new_page()
        errors.watch(page)
        page.on("websocket", lambda ws, name=name: sockets[name].append(ws.url))
        page.goto(stack["server"].url + "/")
        opened[name] = page
    for page in opened.values():
        try:
            page.wait_for_function("window.capstone && window.capstone.worker", timeout=WAIT * 1000)
        except Exception:
            pytest.fail("the page's feed did not go live (no hello from the server)", pytrace=False)
    yield {**opened, "errors": errors, "sockets": sockets, "context": context}
    context.close()


def feed_lines(page) -> list[str]:
    return page.eval_on_selector_all("#feed li", "items => items.map(li => li.textContent)")


def lines_with(page, name: str) -> list[str]:
    return [line for line in feed_lines(page) if name in line]


WATCH_BARS = """() => {
  window.seenBars = [];
  new MutationObserver((changes) => { for (const c of changes) { const t = c.target;
    if (t.tagName === 'PROGRESS') window.seenBars.push([t.dataset.phase, t.value, t.max]); } })
    .observe(document.getElementById('uploads'), {subtree: true, attributes: true});
}"""


@check(points=4, hint="The whole capstone: a 20 MiB upload in one page shows its progress (bytes sent, then "
                      "processing), its bar reaches its max, and one line with the file's name appears in the "
                      "feed of every open page, with no error in any page's console. Finish TODO 1 to 5 first.")
def test_capstone_upload_in_one_page_reaches_every_page(stack, pages, tmp_path):
    page_a, page_b = pages["A"], pages["B"]
    big = tmp_path / f"big-{os.getpid()}.bin"
    big.write_bytes(os.urandom(20 * MiB))
    page_a.evaluate(WATCH_BARS)
    page_a.set_input_files("#file", str(big))
    page_a.click("form button[type=submit]")
    try:
        page_a.wait_for_function("""() => { const bar = document.querySelector('#uploads progress');
            return bar && (bar.dataset.phase === 'failed' || (bar.dataset.phase === 'done' && bar.value === bar.max)); }""",
            timeout=30_000)
    except Exception:
        pass
    if page_a.evaluate("document.querySelector('#uploads progress').dataset.phase") != "done":
        bars = page_a.evaluate("window.seenBars.slice(-3)")
        pytest.fail(f"the upload's progress bar never reached its max (last states: {bars})", pytrace=False)
    for label, page in (("A", page_a), ("B", page_b)):
        assert wait_until(lambda: lines_with(page, big.name), WAIT, interval=0.1), \
            f"page {label}'s feed never showed {big.name}: {feed_lines(page)[-3:]}"
    phases = [phase for phase, *_ in page_a.evaluate("window.seenBars")]
    assert "sending" in phases and "processing" in phases, f"progress phases seen: {sorted(set(phases))}"
    assert phases.index("sending") < phases.index("processing") < phases.index("done"), phases
    processing = [value for phase, value, _ in page_a.evaluate("window.seenBars") if phase == "processing"]
    assert any(50 < value < 100 for value in processing), f"no processing progress between the phases: {processing}"
    time.sleep(0.3)
    for label, page in (("A", page_a), ("B", page_b)):
        assert len(lines_with(page, big.name)) == 1, f"page {label} shows {big.name} {len(lines_with(page, big.name))} times"
    assert not pages["errors"], f"console errors: {pages['errors']}"


@check(task=1, points=3, hint="TODO 1: a page served from another port of the same host is the same SITE, so "
                              "the browser sends it the user's cookies, SameSite=Lax and Strict included. Only "
                              "the Origin check stops it: its handshake must be refused, and that page sees its "
                              "WebSocket close without ever opening.")
def test_task1_a_page_on_another_port_is_refused_in_chromium(stack, pages, live_server):
    other = FastAPI()
    target = stack["server"].url.replace("http://", "ws://") + "/ws"

    @other.get("/")
    async def foreign_page():
        script = (f"const ws = new WebSocket({json.dumps(target)}); window.opened = false;"
                  "ws.onopen = () => { window.opened = true; document.title = 'open'; };"
                  "ws.onclose = (e) => { document.title = 'closed ' + e.code; };")
        return HTMLResponse(f"<!doctype html><title>other port</title><script>{script}</script>")

    @other.get("/favicon.ico")
    async def no_icon():
        return HTMLResponse("", status_code=204)

    foreign = live_server(other)
    page = pages["context"].new_page()  # the same user: the context has the capstone's session cookie
    try:
        page.goto(foreign.url + "/")
        page.wait_for_function("document.title !== 'other port'", timeout=WAIT * 1000)
        assert not page.evaluate("window.opened"), "the page on another port opened the feed"
        assert page.title() == "closed 1006", f"the foreign page saw {page.title()!r}"
    finally:
        page.close()


LIVE_PAGE = """<!doctype html><title>feed</title><link rel="icon" href="data:,">
<script type="module">
import { openFeed } from "/live.js";
window.got = [];
window.feed = openFeed("/ws", { onMessage: (m) => { if (m.id) window.got.push(m.id); }, onStatus: () => {} });
</script>"""


@check(task=5, points=3, hint="TODO 5 (l07_capstone.js): when the connection drops, the page connects again by itself "
                      "and asks for what came after the last id it saw; an entry it already has (a server may "
                      "send it again) is not shown twice.")
def test_task5_the_page_reconnects_resumes_and_skips_repeats(lesson, browser, live_server):
    fake = FastAPI()
    asked = []

    @fake.get("/")
    async def page():
        return HTMLResponse(LIVE_PAGE)

    @fake.get("/live.js")
    async def live_js():
        return FileResponse(Path(lesson.__file__).with_suffix(".js"), media_type="text/javascript")

    @fake.websocket("/ws")
    async def ws(websocket: WebSocket):
        after = websocket.query_params.get("after")
        asked.append(after)
        await websocket.accept()
        if len(asked) == 1:
            for n in (1, 2, 3):
                await websocket.send_text(json.dumps({"id": f"{n}-0", "text": f"entry {n}"}))
            await websocket.close(code=1012)  # a worker restarts
            return
        await websocket.send_text(json.dumps({"hello": {"worker": 0}}))
        for n in (2, 3, 4, 5):  # one worker's relay is behind: it repeats 2 and 3
            await websocket.send_text(json.dumps({"id": f"{n}-0", "text": f"entry {n}"}))
        async for _ in websocket.iter_text():  # until the page goes
            pass

    server = live_server(fake)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        try:
            page.wait_for_function("window.got && window.got.includes('5-0')", timeout=4000)
        except Exception:
            pytest.fail(f"the page did not reconnect and get the rest (asked with after={asked}, "
                        f"got {page.evaluate('window.got')})", pytrace=False)
        got = page.evaluate("window.got")
        assert got == ["1-0", "2-0", "3-0", "4-0", "5-0"], f"the page showed {got}"
        assert asked[:2] == [None, "3-0"], f"the connections asked for after={asked[:2]}, expected [None, '3-0']"
    finally:
        context.close()


@check(task=4, points=2, hint="TODO 4 (l07_capstone.js): the wait before connecting again doubles after each failure "
                      "from the first delay, never exceeds the maximum, and is jittered (random, so pages that "
                      "lost the same worker do not all come back at once).")
def test_task4_reconnect_delay_backs_off_with_jitter(stack, pages):
    samples = pages["A"].evaluate("""async () => { const m = await import('/live.js');
        const draws = (n) => Array.from({length: 40}, () => m.reconnectDelay(n));
        return {first: m.BACKOFF_FIRST_MS, max: m.BACKOFF_MAX_MS, by: [0, 1, 2, 3, 10, 30].map(draws)}; }""")
    first, cap, by = samples["first"], samples["max"], samples["by"]
    for n, draws in zip([0, 1, 2, 3, 10, 30], by):
        assert all(isinstance(d, (int, float)) and 0 <= d <= cap for d in draws), f"after {n} failures: {draws[:5]}"
        assert len(set(draws)) > 10, f"after {n} failures every wait is {draws[0]}: no jitter"
    medians = [sorted(d)[len(d) // 2] for d in by]
    assert max(by[0]) <= first, f"the first wait can be {max(by[0])} ms, longer than the first delay {first}"
    assert medians[3] > 3 * medians[0], f"the wait does not grow: medians {medians}"
    assert max(by[4]) <= cap and min(by[5]) >= cap / 4, f"after many failures: {min(by[5])}..{max(by[5])} (max {cap})"


@check(task=5, points=4, hint="TODO 5 (l07_capstone.js): when the worker holding a page's connection dies, the page "
                      "connects again on its own (to any worker) with the last id it saw, and shows what was "
                      "published while it was away, once each, with no error in its console.")
def test_task5_a_page_whose_worker_is_killed_resumes_without_gaps_or_repeats(stack, pages):
    page_b = pages["B"]
    with redis.Redis.from_url(stack["redis_url"], decode_responses=True) as client:
        client.xadd(STREAM, entry("before-the-kill.txt"))
        assert wait_until(lambda: lines_with(page_b, "before-the-kill.txt"), 4, interval=0.05), \
            "page B's feed did not show an entry published before the kill"
        victim = page_b.evaluate("window.capstone.worker")
        assert victim in stack["server"].worker_pids(), f"page B names worker {victim}, not one of the app's"
        sockets_before = len(pages["sockets"]["B"])
        os.kill(victim, signal.SIGSTOP)  # frozen: what is published now cannot reach page B ...
        try:
            for n in (1, 2, 3):
                client.xadd(STREAM, entry(f"while-away-{n}.txt"))
        finally:
            os.kill(victim, signal.SIGKILL)  # ... and then its worker dies (uvicorn starts another)
        assert wait_until(lambda: len(lines_with(page_b, "while-away-3.txt")) > 0, WAIT, interval=0.05), \
            f"page B did not come back with what it missed: {feed_lines(page_b)[-4:]}"
        client.xadd(STREAM, entry("after-the-return.txt"))
        assert wait_until(lambda: lines_with(page_b, "after-the-return.txt"), WAIT, interval=0.05), \
            "page B shows no live entry after it came back"
    time.sleep(0.3)
    lines = feed_lines(page_b)
    for name in ("before-the-kill.txt", "while-away-1.txt", "while-away-2.txt", "while-away-3.txt",
                 "after-the-return.txt"):
        assert sum(name in line for line in lines) == 1, f"page B shows {name} {sum(name in l for l in lines)} times"
    order = [next(i for i, line in enumerate(lines) if name in line)
             for name in ("before-the-kill.txt", "while-away-1.txt", "while-away-3.txt", "after-the-return.txt")]
    assert order == sorted(order), f"page B shows them out of order: {lines[-5:]}"
    resumed = pages["sockets"]["B"][sockets_before:]
    assert any("after=" in url for url in resumed), f"page B reconnected without after=: {resumed}"
    assert page_b.evaluate("window.capstone.worker") != victim
    assert not pages["errors"], f"console errors: {pages['errors']}"
