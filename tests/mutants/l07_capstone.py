"""Plausible wrong answers to lesson 7, the capstone (see course.mutants); each must lose points on its check.

TODO 1 to 3 are in solutions/l07_capstone.py, TODO 4 and 5 in the page's solutions/l07_capstone.js
(course.mutants finds ``find`` in either); the page's checks run in Chromium.
"""

from course.mutants import Mutant

MUTANTS = [
    Mutant(task=1, check="test_task1_only_the_pages_own_origin_opens_the_feed",
           why="checks that the Origin starts with the page's origin, so a longer host name or a path passes",
           find='return parts.scheme in ("http", "https") and parts.netloc == host and origin == f"{parts.scheme}://{host}"',
           replace='return origin.startswith(f"{parts.scheme}://{host}")'),
    Mutant(task=1, check="test_task1_a_page_on_another_port_is_refused_in_chromium",
           why="compares the host names only, so a page on another port of the same machine opens the feed",
           find='return parts.scheme in ("http", "https") and parts.netloc == host and origin == f"{parts.scheme}://{host}"',
           replace='return parts.scheme in ("http", "https") and parts.hostname == host.partition(":")[0]'),
    Mutant(task=1, check="test_task1_only_the_pages_own_origin_opens_the_feed",
           why="treats a handshake without Origin as the page's own",
           find="    if SAME_ORIGIN not in allowed_origins or not origin or not host:\n        return False\n",
           replace="    if origin is None:\n        return True\n    if SAME_ORIGIN not in allowed_origins or not host:\n"
                   "        return False\n"),
    Mutant(task=2, check="test_task2_the_feed_needs_the_pages_session",
           why="trusts any session cookie that is there, without asking Redis whether the app created it",
           find="    return bool(await sessions.redis.exists(sessions.key(token)))\n",
           replace="    return True\n"),
    Mutant(task=2, check="test_task2_the_feed_needs_the_pages_session",
           why="looks the raw cookie value up in Redis instead of the session's key, so no session is ever found",
           find="return bool(await sessions.redis.exists(sessions.key(token)))",
           replace="return bool(await sessions.redis.exists(token))"),
    Mutant(task=3, check="test_task3_an_upload_announced_by_two_runs_at_once_appears_once",
           why="checks the mark and then adds the line in two separate steps, so two runs both add it",
           find="""    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if await pipe.hget(key, "announced"):
                    return None
                pipe.multi()
                pipe.xadd(relay_lesson.STREAM, {"text": text}, maxlen=relay_lesson.KEEP, approximate=True)
                pipe.hset(key, "announced", "1")
                entry_id, _ = await pipe.execute()
                return entry_id
            except WatchError:
                continue
""",
           replace="""    if await redis.hget(key, "announced"):
        return None
    entry_id = await redis.xadd(relay_lesson.STREAM, {"text": text}, maxlen=relay_lesson.KEEP, approximate=True)
    await redis.hset(key, "announced", "1")
    return entry_id
"""),
    Mutant(task=3, check="test_task3_an_upload_announced_by_two_runs_at_once_appears_once",
           why="adds the line on every run and never marks the upload as announced",
           find='                if await pipe.hget(key, "announced"):\n                    return None\n',
           replace=""),
    Mutant(task=3, check="test_task3_an_upload_is_processed_and_announced_once",
           why="adds the line to a stream of its own, which no page's feed follows",
           find='pipe.xadd(relay_lesson.STREAM, {"text": text}, maxlen=relay_lesson.KEEP, approximate=True)',
           replace='pipe.xadd("capstone:announcements", {"text": text}, maxlen=relay_lesson.KEEP, approximate=True)'),
    # The page (JavaScript): TODO 4, the reconnect delay; TODO 5, reconnect and resume.
    Mutant(task=4, check="test_task4_reconnect_delay_backs_off_with_jitter",
           why="doubles and caps the wait but never jitters it: every page comes back at the same instant",
           find="return ceiling / 2 + Math.random() * (ceiling / 2);",
           replace="return ceiling;"),
    Mutant(task=4, check="test_task4_reconnect_delay_backs_off_with_jitter",
           why="forgets the cap: after a long outage a page waits for hours",
           find="const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures);",
           replace="const ceiling = BACKOFF_FIRST_MS * 2 ** failures;"),
    Mutant(task=4, check="test_task4_reconnect_delay_backs_off_with_jitter",
           why="jitters by adding up to the whole delay again, so the first wait can be twice the first delay",
           find="return ceiling / 2 + Math.random() * (ceiling / 2);",
           replace="return ceiling + Math.random() * ceiling;"),
    Mutant(task=5, check="test_task5_the_page_reconnects_resumes_and_skips_repeats",
           why="reconnects without after=, so it gets only what comes next and misses what came meanwhile",
           find='    if (feed.lastId !== null) url.searchParams.set("after", feed.lastId);\n',
           replace=""),
    Mutant(task=5, check="test_task5_the_page_reconnects_resumes_and_skips_repeats",
           why="passes every message on, so entries a resumed connection repeats show twice",
           find="        if (!isNewer(message.id, feed.lastId)) return;\n",
           replace=""),
    Mutant(task=5, check="test_task5_a_page_whose_worker_is_killed_resumes_without_gaps_or_repeats",
           why="reports the lost connection but never connects again",
           find="      setTimeout(connect, delay);\n",
           replace=""),
]
