"""Plausible wrong answers to lesson 1, each a small change to a solution region.

``tests/course/test_mutants.py`` grades every one and fails unless it loses points on ``check``.
"""

from course.mutants import Mutant

MUTANTS = [
    # TODO 1: answer first, build the report afterwards
    Mutant(task=1, check="test_task1_report_answers_202_before_the_work_is_done",
           why="builds the report inside the endpoint, before answering",
           find="        background_tasks.add_task(build_report, jobs, job_id, seconds)\n",
           replace="        build_report(jobs, job_id, seconds)\n"),
    Mutant(task=1, check="test_task1_report_answers_202_before_the_work_is_done",
           why="calls build_report while handing it to add_task, so it runs before the response",
           find="        background_tasks.add_task(build_report, jobs, job_id, seconds)\n",
           replace="        background_tasks.add_task(build_report(jobs, job_id, seconds))\n"),
    Mutant(task=1, check="test_task1_report_is_built_after_the_response",
           why="creates the job and answers, but never schedules the work",
           find="        background_tasks.add_task(build_report, jobs, job_id, seconds)\n",
           replace=""),
    Mutant(task=1, check="test_task1_report_answers_202_before_the_work_is_done",
           why="answers with a job id of its own instead of the created job's",
           find='        return {"job_id": job_id, "status": "pending"}\n        ### STUB',
           replace='        return {"job_id": uuid.uuid4().hex[:12], "status": "pending"}\n        ### STUB'),
    # TODO 2: a failing task records its failure
    Mutant(task=2, check="test_task2_a_failing_task_records_its_failure",
           why="records the failure, then re-raises it: the next task of the response never runs",
           find='        jobs.update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")\n',
           replace='        jobs.update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")\n        raise\n'),
    Mutant(task=2, check="test_task2_a_failing_task_records_its_failure",
           why="records only the message, not the exception's name",
           find='error=f"{type(exc).__name__}: {exc}"',
           replace="error=str(exc)"),
    Mutant(task=2, check="test_task2_the_failure_is_logged_with_its_traceback",
           why="records the failure but never logs it",
           find='        log.exception("job %s failed", job_id)\n',
           replace=""),
    Mutant(task=2, check="test_task2_the_failure_is_logged_with_its_traceback",
           why="logs the failure as a plain error line, without the traceback",
           find='        log.exception("job %s failed", job_id)\n',
           replace='        log.error("job %s failed: %s", job_id, exc)\n'),
    Mutant(task=2, check="test_task2_a_successful_task_records_running_then_its_result",
           why="never marks the job running: it jumps from pending to done or failed",
           find='    jobs.update(job_id, status="running")\n    try:\n',
           replace="    try:\n"),
    Mutant(task=2, check="test_task2_a_successful_task_records_running_then_its_result",
           why="marks the job done but forgets its result",
           find='        jobs.update(job_id, status="done", result=result)\n',
           replace='        jobs.update(job_id, status="done")\n'),
    # TODO 3: keep the event loop free
    Mutant(task=3, check="test_task3_blocking_task_does_not_stall_other_requests",
           why="keeps `async def` and adds an await first, as if that made the blocking call non-blocking",
           find='\ndef make_thumbnail(jobs: JobStore, job_id: str, seconds: float) -> None:\n'
                '    """Resize an image: blocking work that takes ``seconds``."""\n',
           replace='\nasync def make_thumbnail(jobs: JobStore, job_id: str, seconds: float) -> None:\n'
                   '    """Resize an image: blocking work that takes ``seconds``."""\n'
                   '    await __import__("asyncio").sleep(0)\n'),
    Mutant(task=3, check="test_task3_blocking_task_does_not_stall_other_requests",
           why="starts the resize in a thread of its own and marks the job done without waiting for it",
           find="    resize_image(seconds)\n    jobs.update(job_id, status=\"done\")\n### STUB",
           replace="    threading.Thread(target=resize_image, args=(seconds,)).start()\n"
                   "    jobs.update(job_id, status=\"done\")\n### STUB"),
    Mutant(task=3, check="test_task3_blocking_task_does_not_stall_other_requests",
           why="keeps `async def` and hands the resize to a thread without awaiting it",
           find='\ndef make_thumbnail(jobs: JobStore, job_id: str, seconds: float) -> None:\n'
                '    """Resize an image: blocking work that takes ``seconds``."""\n'
                '    jobs.update(job_id, status="running")\n    resize_image(seconds)\n',
           replace='\nasync def make_thumbnail(jobs: JobStore, job_id: str, seconds: float) -> None:\n'
                   '    """Resize an image: blocking work that takes ``seconds``."""\n'
                   '    jobs.update(job_id, status="running")\n'
                   '    __import__("asyncio").get_running_loop().run_in_executor(None, resize_image, seconds)\n'),
]
