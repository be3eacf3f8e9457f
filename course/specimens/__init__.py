"""Specimens: the code every tutorial shows, kept as it is so notebooks, tests and benches can
show what goes wrong with it. Do not copy them; each lesson teaches the robust version.

* :mod:`course.specimens.classic_upload`  the classic upload endpoint (``await file.read()`` then
  background tasks with a request-scoped database), and its usual first fix (``UploadFile``
  copied to disk in chunks); notebook 02 and ``bench/upload_memory.py``
"""
