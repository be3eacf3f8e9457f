"""Plausible wrong answers to lesson 3, each caught by the check it names (see course.mutants)."""

from course.mutants import Mutant

SEND_AND_RECEIVE = """        try:
            async with asyncio.TaskGroup() as both:
                both.create_task(send_each(new_events))
                both.create_task(read_until_closed())
        except* WebSocketDisconnect as left:
            log.info("push client left with close code %s", left.exceptions[0].code)"""

MUTANTS = [
    # TODO 1: push, receiving while sending
    Mutant(task=1, check="test_task1_a_talking_push_client_outlives_the_ping_timeout",
           why="only sends, never reads (the course's old reference): a client that talks is cut off with 1011",
           find=SEND_AND_RECEIVE,
           replace="""        try:
            await send_each(new_events)
        except WebSocketDisconnect as left:
            log.info("push client left with close code %s", left.code)"""),
    Mutant(task=1, check="test_task1_shutdown_is_prompt_with_idle_push_clients",
           why="only sends, never reads: an idle push client holds the server's shutdown",
           find=SEND_AND_RECEIVE,
           replace="""        try:
            await send_each(new_events)
        except WebSocketDisconnect as left:
            log.info("push client left with close code %s", left.code)"""),
    Mutant(task=1, check="test_task1_a_departing_push_client_is_unsubscribed_at_once",
           why="only sends, never reads: a client that closed stays subscribed until the next event",
           find=SEND_AND_RECEIVE,
           replace="""        try:
            await send_each(new_events)
        except WebSocketDisconnect as left:
            log.info("push client left with close code %s", left.code)"""),
    Mutant(task=1, check="test_task1_push_delivers_an_event_within_moments",
           why="takes turns: waits for a message from the client before each event it sends",
           find=SEND_AND_RECEIVE,
           replace="""        try:
            while True:
                await websocket.receive_text()
                await websocket.send_json(await new_events.get())
        except WebSocketDisconnect as left:
            log.info("push client left with close code %s", left.code)"""),
    Mutant(task=1, check="test_task1_shutdown_is_prompt_with_idle_push_clients",
           why="reads with iter_text, which ends quietly on a disconnect, so the task group keeps waiting "
               "for the sender: the push loop does not end when the reading side ends",
           find="""        while True:  # what the client says is ignored; its leaving, or a shutdown, raises here
            await websocket.receive_text()""",
           replace="""        async for _ in websocket.iter_text():
            pass"""),
    Mutant(task=1, check="test_task1_a_departing_push_client_is_unsubscribed_at_once",
           why="runs both in a task group but does not handle the client leaving: every departure "
               "is logged as an error",
           find="""        except* WebSocketDisconnect as left:
            log.info("push client left with close code %s", left.exceptions[0].code)""",
           replace="""        finally:
            pass"""),
    # TODO 2: count the echo clients
    Mutant(task=2, check="test_task2_the_client_count_follows_every_way_of_leaving",
           why="removes the client only when WebSocketDisconnect is raised, not when the echo loop "
               "returns after a message too big",
           find="""    except WebSocketDisconnect as exc:
        log.info("echo client left with close code %s", exc.code)
    finally:
        clients.discard(websocket)""",
           replace="""    except WebSocketDisconnect as exc:
        log.info("echo client left with close code %s", exc.code)
        clients.discard(websocket)"""),
    Mutant(task=2, check="test_task2_a_client_leaving_is_not_an_error",
           why="logs every client leaving as an error, with a traceback",
           find='log.info("echo client left with close code %s", exc.code)',
           replace='log.exception("echo client left with close code %s", exc.code)'),
    Mutant(task=2, check="test_task2_a_client_leaving_is_not_an_error",
           why="keeps the count right with try/finally but does not catch WebSocketDisconnect",
           find="""    except WebSocketDisconnect as exc:
        log.info("echo client left with close code %s", exc.code)
    finally:""",
           replace="""    finally:"""),
    # TODO 3: a size limit per endpoint
    Mutant(task=3, check="test_task3_the_limit_counts_bytes_not_characters",
           why="counts characters, not UTF-8 bytes",
           find="if len(message.encode()) > max_message_bytes:",
           replace="if len(message) > max_message_bytes:"),
    Mutant(task=3, check="test_task3_an_oversized_message_closes_with_1009",
           why="refuses a message of exactly the limit too",
           find="if len(message.encode()) > max_message_bytes:",
           replace="if len(message.encode()) >= max_message_bytes:"),
    Mutant(task=3, check="test_task3_an_oversized_message_closes_with_1009",
           why="closes but keeps going, and echoes the message on the closed WebSocket",
           find="""                                  reason=f"messages are limited to {max_message_bytes} bytes")
            return""",
           replace="""                                  reason=f"messages are limited to {max_message_bytes} bytes")"""),
    Mutant(task=3, check="test_task3_an_oversized_message_closes_with_1009",
           why="closes with the policy-violation code instead of 'message too big'",
           find="await websocket.close(code=status.WS_1009_MESSAGE_TOO_BIG,",
           replace="await websocket.close(code=status.WS_1008_POLICY_VIOLATION,"),
    # TODO 4: the Origin rule
    Mutant(task=4, check="test_task4_only_an_exact_origin_gets_in",
           why="compares with startswith, so http://localhost:8000.evil.example gets in",
           find="    return origin in allowed_origins",
           replace="    return origin is None and None in allowed_origins or origin is not None and any(\n"
                   "        allowed is not None and origin.startswith(allowed) for allowed in allowed_origins)"),
    Mutant(task=4, check="test_task4_only_an_exact_origin_gets_in",
           why="looks for the origin inside an allowed one (a substring), so http://localhost gets in",
           find="    return origin in allowed_origins",
           replace="    return origin is None and None in allowed_origins or origin is not None and any(\n"
                   "        allowed is not None and origin in allowed for allowed in allowed_origins)"),
    Mutant(task=4, check="test_task4_a_missing_origin_is_allowed_only_when_none_is_listed",
           why="always lets a handshake without Origin in, whatever allowed_origins says",
           find="    return origin in allowed_origins",
           replace="    return origin is None or origin in allowed_origins"),
    Mutant(task=4, check="test_task4_a_missing_origin_is_allowed_only_when_none_is_listed",
           why="always refuses a handshake without Origin, even when None is allowed",
           find="    return origin in allowed_origins",
           replace="    return origin is not None and origin in allowed_origins"),
    Mutant(task=4, check="test_task4_a_foreign_origin_is_refused_before_accept",
           why="accepts first and closes with 1008 afterwards: the handshake succeeds (101)",
           find="""    await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
    return True""",
           replace="""    await websocket.accept()
    await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
    return True"""),
    # TODO 5: server-sent events
    Mutant(task=5, check="test_task5_the_stream_sends_each_event_in_order_with_its_id",
           why="sends the events without their id, so a reconnecting browser cannot say where it was",
           find="""                continue
            yield ServerSentEvent(id=str(event["id"]), data=event)""",
           replace="""                continue
            yield ServerSentEvent(data=event)"""),
    Mutant(task=5, check="test_task5_a_reconnect_resumes_after_last_event_id",
           why="ignores Last-Event-ID: a reconnecting client gets only new events, and loses what it missed",
           find="missed = events.since(last_event_id) if last_event_id is not None else []",
           replace="missed = []"),
    Mutant(task=5, check="test_task5_the_stream_sends_each_event_in_order_with_its_id",
           why="treats a first connection (no Last-Event-ID) as id 0, and replays every event ever published",
           find="missed = events.since(last_event_id) if last_event_id is not None else []",
           replace="missed = events.since(last_event_id or 0)"),
    Mutant(task=5, check="test_task5_a_reconnect_resumes_after_last_event_id",
           why="resumes one event too late (skips the first one it missed)",
           find="missed = events.since(last_event_id) if last_event_id is not None else []",
           replace="missed = events.since(last_event_id + 1) if last_event_id is not None else []"),
    Mutant(task=5, check="test_task5_a_reconnect_resumes_after_last_event_id",
           why="resumes one event too early (sends the last one it saw again)",
           find="missed = events.since(last_event_id) if last_event_id is not None else []",
           replace="missed = events.since(last_event_id - 1) if last_event_id is not None else []"),
    Mutant(task=5, check="test_task5_an_idle_stream_sends_keepalive_comments",
           why="no keep-alive of its own: waits for the next event as long as it takes "
               "(FastAPI's own ping comes only every 15 s)",
           find="""            try:
                async with asyncio.timeout(keepalive_seconds):
                    event = await new_events.get()
            except TimeoutError:
                yield ServerSentEvent(comment="keep-alive")
                continue""",
           replace="""            event = await new_events.get()"""),
    Mutant(task=5, check="test_task5_an_idle_stream_sends_keepalive_comments",
           why="sends the keep-alive and then stops streaming",
           find="""                yield ServerSentEvent(comment="keep-alive")
                continue""",
           replace="""                yield ServerSentEvent(comment="keep-alive")
                return"""),
]
