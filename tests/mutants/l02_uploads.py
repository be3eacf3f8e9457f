"""Plausible wrong answers to lesson 2, each a small change to a solution region.

``tests/course/test_mutants.py`` grades every one and fails unless it loses points on ``check``.
"""

from course.mutants import Mutant

MUTANTS = [
    # TODO 1a: display_name
    Mutant(task=1, check="test_task1_display_name_keeps_only_a_harmless_name",
           why="splits on '/' only, as on Linux: a Windows path keeps its folders",
           find='name = re.split(r"[/\\\\]", client_filename)[-1]',
           replace='name = client_filename.rsplit("/", 1)[-1]'),
    Mutant(task=1, check="test_task1_display_name_keeps_only_a_harmless_name",
           why="keeps control characters (NUL, newlines, right-to-left override)",
           find='    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C")).strip()\n',
           replace="    name = name.strip()\n"),
    Mutant(task=1, check="test_task1_display_name_keeps_only_a_harmless_name",
           why="falls back to 'unnamed' only for an empty result, so '..' stays '..'",
           find='    if name in ("", ".", ".."):\n',
           replace='    if not name:\n'),
    Mutant(task=1, check="test_task1_display_name_keeps_only_a_harmless_name",
           why="refuses only the exactly empty name: a blank one passes",
           find="    if not client_filename.strip():\n",
           replace='    if client_filename == "":\n'),
    Mutant(task=1, check="test_task1_display_name_keeps_only_a_harmless_name",
           why="forgets to cut long names",
           find="    return name[:MAX_NAME_CHARS]\n",
           replace="    return name\n"),
    # TODO 1b: storage_path
    Mutant(task=1, check="test_task1_storage_path_is_chosen_by_the_server",
           why="trusts the id and skips the check",
           find='    if not UPLOAD_ID.fullmatch(upload_id):\n        raise ValueError(f"not an upload id: {upload_id!r}")\n',
           replace=""),
    Mutant(task=1, check="test_task1_storage_path_is_chosen_by_the_server",
           why="checks only that the id STARTS like an upload id (match instead of fullmatch)",
           find="    if not UPLOAD_ID.fullmatch(upload_id):\n",
           replace="    if not UPLOAD_ID.match(upload_id):\n"),
    # TODO 2: save_stream
    Mutant(task=2, check="test_task2_a_large_upload_never_sits_in_server_memory",
           why="collects all the chunks, then writes the whole upload at once",
           find="            async for chunk in chunks:\n                size += len(chunk)\n"
                "                if size > max_bytes:\n                    raise too_large(max_bytes)\n"
                "                await run_in_threadpool(out.write, chunk)\n",
           replace="            data = b\"\".join([chunk async for chunk in chunks])\n            size = len(data)\n"
                   "            if size > max_bytes:\n                raise too_large(max_bytes)\n"
                   "            await run_in_threadpool(out.write, data)\n"),
    Mutant(task=2, check="test_task2_a_large_upload_never_sits_in_server_memory",
           why="adds the chunks up into one bytes object, checking the limit as it goes, and writes at the end",
           find="            async for chunk in chunks:\n                size += len(chunk)\n"
                "                if size > max_bytes:\n                    raise too_large(max_bytes)\n"
                "                await run_in_threadpool(out.write, chunk)\n",
           replace="            data = b\"\"\n            async for chunk in chunks:\n                data += chunk\n"
                   "                size += len(chunk)\n                if size > max_bytes:\n"
                   "                    raise too_large(max_bytes)\n"
                   "            await run_in_threadpool(out.write, data)\n"),
    Mutant(task=2, check="test_task2_stops_reading_at_the_first_chunk_over_the_limit",
           why="checks the size once, after the whole upload was written",
           find="                if size > max_bytes:\n                    raise too_large(max_bytes)\n"
                "                await run_in_threadpool(out.write, chunk)\n",
           replace="                await run_in_threadpool(out.write, chunk)\n"
                   "            if size > max_bytes:\n                raise too_large(max_bytes)\n"),
    Mutant(task=2, check="test_task2_over_the_limit_gets_413_and_leaves_no_file",
           why="refuses a file of exactly the limit (>= instead of >)",
           find="                if size > max_bytes:\n",
           replace="                if size >= max_bytes:\n"),
    Mutant(task=2, check="test_task2_over_the_limit_gets_413_and_leaves_no_file",
           why="deletes the partial file but forgets to re-raise: the upload is 'accepted' without its file",
           find="        destination.unlink(missing_ok=True)\n        raise\n",
           replace="        destination.unlink(missing_ok=True)\n"),
    Mutant(task=2, check="test_task2_any_failure_or_cancellation_leaves_no_partial_file",
           why="cleans up only after a 413, not when the client goes away",
           find="    except BaseException:  # cancellation too: the partial file must go in every case\n",
           replace="    except HTTPException:\n"),
    Mutant(task=2, check="test_task2_any_failure_or_cancellation_leaves_no_partial_file",
           why="catches Exception: a cancelled upload (CancelledError is a BaseException) leaves its partial file",
           find="    except BaseException:  # cancellation too: the partial file must go in every case\n",
           replace="    except Exception:\n"),
    Mutant(task=2, check="test_task2_any_failure_or_cancellation_leaves_no_partial_file",
           why="opens with 'wb': a file that is already there is overwritten",
           find='    out = destination.open("xb")\n',
           replace='    out = destination.open("wb")\n'),
    Mutant(task=2, check="test_task2_a_slow_disk_does_not_stall_the_event_loop",
           why="writes straight from the coroutine: a slow disk stalls the event loop",
           find="                await run_in_threadpool(out.write, chunk)\n",
           replace="                out.write(chunk)\n"),
    # TODO 3: finish_upload
    Mutant(task=3, check="test_task3_a_failing_background_step_shows_as_failed",
           why="no try/except: a failing checksum leaves the row 'pending' forever",
           find='    try:\n        outcome = {"status": "done", "sha256": checksum(path), "error": None}\n'
                '    except Exception as exc:\n        log.exception("upload %s failed", upload_id)\n'
                '        outcome = {"status": "failed", "sha256": None, "error": f"{type(exc).__name__}: {exc}"}\n',
           replace='    outcome = {"status": "done", "sha256": checksum(path), "error": None}\n'),
    Mutant(task=3, check="test_task3_a_failing_background_step_shows_as_failed",
           why="records only the message, not the exception's name",
           find='"error": f"{type(exc).__name__}: {exc}"}',
           replace='"error": str(exc)}'),
    Mutant(task=3, check="test_task3_a_failing_background_step_shows_as_failed",
           why="pastes the values into the UPDATE with an f-string: a quote in the error message breaks it",
           find='        db.execute("UPDATE uploads SET status = :status, sha256 = :sha256, error = :error WHERE id = :id",\n'
                '                   {**outcome, "id": upload_id})\n',
           replace="        db.execute(f\"UPDATE uploads SET status = '{outcome['status']}', sha256 = '{outcome['sha256']}', \"\n"
                   "                   f\"error = '{outcome['error']}' WHERE id = '{upload_id}'\")\n"),
    Mutant(task=3, check="test_task3_forty_concurrent_uploads_give_forty_rows_and_forty_files",
           why="closes the connection without committing: the update is rolled back",
           find="    with closing(connect(db_path)) as db, db:\n        db.execute(\"UPDATE",
           replace="    with closing(connect(db_path)) as db:\n        db.execute(\"UPDATE"),
    Mutant(task=3, check="test_task3_the_failure_is_logged_by_the_lesson_not_raised",
           why="records the failure, then raises it again",
           find='                   {**outcome, "id": upload_id})\n',
           replace='                   {**outcome, "id": upload_id})\n'
                   '    if outcome["status"] == "failed":\n        raise RuntimeError(outcome["error"])\n'),
    Mutant(task=3, check="test_task3_the_failure_is_logged_by_the_lesson_not_raised",
           why="records the failure but never logs it",
           find='        log.exception("upload %s failed", upload_id)\n',
           replace=""),
    # TODO 4: upload_status
    Mutant(task=4, check="test_task4_a_crafted_upload_id_cannot_break_or_leak",
           why="pastes the id from the URL into the SQL with an f-string",
           find='            row = db.execute("SELECT id, status, original_name, size, sha256, error FROM uploads WHERE id = ?",\n'
                "                             (upload_id,)).fetchone()\n",
           replace='            row = db.execute(f"SELECT id, status, original_name, size, sha256, error FROM uploads '
                   "WHERE id = '{upload_id}'\").fetchone()\n"),
    Mutant(task=4, check="test_task4_a_crafted_upload_id_cannot_break_or_leak",
           why="builds the query with % formatting, which is just as open to injection",
           find='            row = db.execute("SELECT id, status, original_name, size, sha256, error FROM uploads WHERE id = ?",\n'
                "                             (upload_id,)).fetchone()\n",
           replace="            row = db.execute(\"SELECT id, status, original_name, size, sha256, error FROM uploads "
                   "WHERE id = '%s'\" % upload_id).fetchone()\n"),
    Mutant(task=4, check="test_task4_status_reports_metadata_and_404_for_unknown_ids",
           why="selects every column: created_at leaks into the answer",
           find='"SELECT id, status, original_name, size, sha256, error FROM uploads WHERE id = ?"',
           replace='"SELECT * FROM uploads WHERE id = ?"'),
    Mutant(task=4, check="test_task4_status_reports_metadata_and_404_for_unknown_ids",
           why="answers an unknown id with an empty 200 instead of a 404",
           find='            raise HTTPException(404, f"No upload with id {upload_id!r}.")\n',
           replace="            return {}\n"),
    Mutant(task=4, check="test_task4_status_reports_metadata_and_404_for_unknown_ids",
           why="a 404 that does not say which id",
           find='            raise HTTPException(404, f"No upload with id {upload_id!r}.")\n',
           replace='            raise HTTPException(404, "Not found.")\n'),
]
