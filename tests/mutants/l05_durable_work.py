"""Plausible wrong answers to lesson 5 (durable work); each must lose points on the named check."""

from course.mutants import Mutant

MUTANTS = [
    # TODO 1: the web process records, enqueues and answers; it reads status from Redis.
    Mutant(task=1, check="test_post_answers_202_at_once",
           why="runs the job inside the request instead of sending it to the workers",
           find="        await run_job.kicker().with_broker(app.state.broker).kiq(job_id)\n",
           replace="        await work(job.seconds, job.fail_times, 1)\n"),
    Mutant(task=1, check="test_every_job_done",
           why="sends the job to the queue but never records it in Redis",
           find="        await jobs.create(job_id, seconds=job.seconds, fail_times=job.fail_times)\n",
           replace=""),
    Mutant(task=1, check="test_unknown_job_is_404",
           why="returns whatever Redis gave back, so an unknown job is not a 404",
           find="        if record is None:\n            raise HTTPException(status.HTTP_404_NOT_FOUND, f\"no job {job_id!r}\")\n",
           replace=""),
    # TODO 2: count every start and say running, in Redis.
    Mutant(task=2, check="test_killed_worker_loses_nothing",
           why="marks the job running but always reports attempt 1 instead of counting",
           find="            pipe.hincrby(self.key(job_id), \"attempts\", 1)\n"
                "            pipe.hset(self.key(job_id), \"status\", \"running\")\n"
                "            attempts, _ = await pipe.execute()\n"
                "        return attempts\n",
           replace="            pipe.hset(self.key(job_id), mapping={\"status\": \"running\", \"attempts\": 1})\n"
                   "            await pipe.execute()\n"
                   "        return 1\n"),
    Mutant(task=2, check="test_long_job_is_not_started_twice",
           why="counts the attempt but never says the job is running",
           find="            pipe.hset(self.key(job_id), \"status\", \"running\")\n"
                "            attempts, _ = await pipe.execute()\n",
           replace="            attempts, = await pipe.execute()\n"),
    # TODO 3: one completion row per job, however often it runs.
    Mutant(task=3, check="test_completion_recorded_once",
           why="has no unique key on the job id, so a second run adds a second row",
           find="completions (job_id TEXT PRIMARY KEY, finished_at",
           replace="completions (job_id TEXT, finished_at"),
    Mutant(task=3, check="test_completion_recorded_once",
           why="plain INSERT: the second run of the job fails on the unique key",
           find="\"INSERT OR IGNORE INTO completions",
           replace="\"INSERT INTO completions"),
    # TODO 4: retries with a bounded back-off, then "failed" with the error.
    Mutant(task=4, check="test_failing_job_is_retried",
           why="gives up at the first failure instead of retrying",
           find="            if attempt >= MAX_ATTEMPTS:\n",
           replace="            if attempt >= 1:\n"),
    Mutant(task=4, check="test_always_failing_job_ends_failed",
           why="retries forever: never counts the attempts against the maximum",
           find="            if attempt >= MAX_ATTEMPTS:\n",
           replace="            if attempt >= 100 * MAX_ATTEMPTS:\n"),
    Mutant(task=4, check="test_always_failing_job_ends_failed",
           why="retries at once, without waiting",
           find="            await asyncio.sleep(backoff(attempt))\n",
           replace=""),
    Mutant(task=4, check="test_always_failing_job_ends_failed",
           why="marks the job failed but drops the error text",
           find="                await jobs.set_status(job_id, \"failed\", error)\n",
           replace="                await jobs.set_status(job_id, \"failed\")\n"),
]
