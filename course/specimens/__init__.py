"""Specimens: the code every tutorial shows, kept as it is so notebooks, tests and benches can
show what goes wrong with it. Do not copy them; each lesson teaches the robust version.

* :mod:`course.specimens.classic_upload`  the classic upload endpoint (``await file.read()`` then
  background tasks with a request-scoped database), and its usual first fix (``UploadFile``
  copied to disk in chunks); notebook 02 and ``bench/upload_memory.py``
* :mod:`course.specimens.usual_broadcast` the tutorial ``ConnectionManager`` (a list, a broadcast that
  awaits each client); notebook 04 and ``bench/broadcast.py``
* :mod:`course.specimens.background_jobs` the job endpoint done with ``BackgroundTasks``; notebook 05 and
  ``bench/durable_work.py``
* :mod:`course.specimens.broker_demo`     stock taskiq-redis brokers (list, pub/sub, stream) next to the
  course's, for a worker killed mid-job; notebook 05
"""
