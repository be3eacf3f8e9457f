"""Plausible wrong answers to lesson 4, each caught by the check it names (see course.mutants)."""

from course.mutants import Mutant

MUTANTS = [
    # TODO 1: broadcast
    Mutant(task=1, check="test_task1_a_full_outbox_drops_its_client_and_no_one_else",
           why="loops over the live dict of outboxes, which drop() changes during the loop",
           find="for websocket, outbox in list(self._outboxes.items()):",
           replace="for websocket, outbox in self._outboxes.items():"),
    Mutant(task=1, check="test_task1_every_client_gets_every_message_in_order",
           why="calls put() instead of put_nowait(): a coroutine nobody awaits, so nothing is queued",
           find="outbox.put_nowait(message)",
           replace="outbox.put(message)"),
    Mutant(task=1, check="test_task1_a_full_outbox_drops_its_client_and_no_one_else",
           why="ignores a full outbox: the client that does not keep up stays registered",
           find="            except asyncio.QueueFull:\n                self.drop(websocket)",
           replace="            except asyncio.QueueFull:\n                pass  # it will catch up"),
    Mutant(task=1, check="test_task1_a_full_outbox_drops_its_client_and_no_one_else",
           why="only forgets the client with a full outbox (disconnect) instead of dropping it",
           find="            except asyncio.QueueFull:\n                self.drop(websocket)",
           replace="            except asyncio.QueueFull:\n                self.disconnect(websocket)"),
    # TODO 2: the writer task
    Mutant(task=2, check="test_task2_a_send_that_hangs_drops_its_client",
           why="sends with no time limit: a client that stopped reading holds its writer forever",
           find="                async with asyncio.timeout(self.send_timeout):\n"
                "                    await websocket.send_text(message)",
           replace="                await websocket.send_text(message)"),
    Mutant(task=2, check="test_task2_a_quiet_room_keeps_its_clients",
           why="puts the time limit around the whole loop, so waiting for messages counts too",
           find="            while True:\n"
                "                message = await outbox.get()\n"
                "                async with asyncio.timeout(self.send_timeout):\n"
                "                    await websocket.send_text(message)",
           replace="            async with asyncio.timeout(self.send_timeout):\n"
                   "                while True:\n"
                   "                    message = await outbox.get()\n"
                   "                    await websocket.send_text(message)"),
    Mutant(task=2, check="test_task2_a_send_that_hangs_drops_its_client",
           why="on a send timeout only forgets the client (disconnect) instead of dropping it",
           find="        except TimeoutError:\n            self.drop(websocket)",
           replace="        except TimeoutError:\n            self.disconnect(websocket)"),
    Mutant(task=2, check="test_task2_a_send_that_hangs_drops_its_client",
           why="awaits the close inline in the writer on a send timeout instead of dropping",
           find="        except TimeoutError:\n            self.drop(websocket)",
           replace="        except TimeoutError:\n"
                   "            await websocket.close(status.WS_1013_TRY_AGAIN_LATER, \"too slow\")"),
    # TODO 3: disconnect
    Mutant(task=3, check="test_task3_disconnect_is_idempotent_and_leaves_no_writer_behind",
           why="forgets the outbox but leaves the writer task running",
           find="        writer = self._writers.pop(websocket, None)\n"
                "        if writer is not None and writer is not asyncio.current_task():\n"
                "            writer.cancel()",
           replace=""),
    Mutant(task=3, check="test_task3_disconnect_is_idempotent_and_leaves_no_writer_behind",
           why="cancels the current task instead of the client's writer",
           find="        writer = self._writers.pop(websocket, None)\n"
                "        if writer is not None and writer is not asyncio.current_task():\n"
                "            writer.cancel()",
           replace="        self._writers.pop(websocket, None)\n"
                   "        asyncio.current_task().cancel()"),
    Mutant(task=3, check="test_task3_disconnect_is_idempotent_and_leaves_no_writer_behind",
           why="removes the client with del, which fails the second time",
           find="        self._outboxes.pop(websocket, None)",
           replace="        del self._outboxes[websocket]"),
    Mutant(task=3, check="test_task3_disconnect_is_idempotent_and_leaves_no_writer_behind",
           why="pops the writer from the dict but never cancels it",
           find="            writer.cancel()",
           replace="            pass  # out of the dict, out of mind"),
    # TODO 4: drop
    Mutant(task=4, check="test_task4_a_dropped_client_is_forgotten_and_told_to_try_again_later",
           why="closes the client without forgetting it first",
           find="        self.disconnect(websocket)\n        task = asyncio.create_task(",
           replace="        task = asyncio.create_task("),
    Mutant(task=4, check="test_task4_a_dropped_client_is_forgotten_and_told_to_try_again_later",
           why="calls the close coroutine without a task: nothing ever runs it",
           find="        task = asyncio.create_task(self._close(websocket, status.WS_1013_TRY_AGAIN_LATER, "
                "\"too slow\"),\n"
                "                                   name=\"ws-drop\")\n"
                "        self._closing.add(task)\n"
                "        task.add_done_callback(self._closing.discard)",
           replace="        self._close(websocket, status.WS_1013_TRY_AGAIN_LATER, \"too slow\")"),
    Mutant(task=4, check="test_task4_a_dropped_client_is_forgotten_and_told_to_try_again_later",
           why="closes with 1008 policy violation instead of 1013 try again later",
           find="self._close(websocket, status.WS_1013_TRY_AGAIN_LATER, \"too slow\"),\n",
           replace="self._close(websocket, status.WS_1008_POLICY_VIOLATION, \"too slow\"),\n"),
]
