"""The upload endpoint every FastAPI learner meets first, kept as it is so notebook 02 and
``bench/upload_memory.py`` can show what goes wrong with it. Do not copy it: see lesson 2.

* :func:`create_classic_app` the classic snippet. The only changes: the folder and the database
  are parameters (so every demo runs in a throw-away temp folder), and ``db_scope`` picks the
  dependency scope.
* :func:`create_chunked_copy_app` the usual first fix: the same ``UploadFile`` endpoint, copying
  the file to disk in chunks (``await file.read(CHUNK)``) instead of ``await file.read()``.
  Only the memory problem is addressed; the filename is still the client's.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal

from fastapi import BackgroundTasks, Depends, FastAPI, File, UploadFile

CHUNK = 1024 * 1024


def create_classic_app(upload_dir: str | Path, db_path: str | Path,
                       db_scope: Literal["request", "function"] = "request") -> FastAPI:
    """The classic endpoint, ``POST /upload-file/``, saving into ``upload_dir`` and logging to ``db_path``."""
    upload_dir, db_path = str(upload_dir), str(db_path)
    with sqlite3.connect(db_path) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS uploads (filename TEXT)")
    setup.close()
    app = FastAPI(title="The classic upload endpoint")

    def get_db():
        db = sqlite3.connect(db_path)  # check_same_thread=True, sqlite3's default
        try:
            yield db
        finally:
            db.close()

    def save_file(filename: str, content: bytes) -> None:
        with open(os.path.join(upload_dir, filename), "wb") as out:
            out.write(content)

    def log_file_upload(filename: str, db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO uploads (filename) VALUES (?)", (filename,))
        db.commit()

    @app.post("/upload-file/")
    async def upload_file(file: UploadFile = File(...), background_tasks: BackgroundTasks = BackgroundTasks(),
                          db: sqlite3.Connection = Depends(get_db, scope=db_scope)):
        file_content = await file.read()
        background_tasks.add_task(save_file, file.filename, file_content)
        background_tasks.add_task(log_file_upload, file.filename, db)
        return {"message": "uploading..."}

    @app.get("/ping")
    async def ping():
        return {"pong": True}

    return app


def create_chunked_copy_app(upload_dir: str | Path, db_path: str | Path) -> FastAPI:
    """The usual fix of the classic endpoint, ``POST /upload-file/``: copy the ``UploadFile`` to
    ``upload_dir`` one chunk at a time, then log the upload in a background task with its own connection."""
    upload_dir, db_path = str(upload_dir), str(db_path)
    with sqlite3.connect(db_path) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS uploads (filename TEXT)")
    setup.close()
    app = FastAPI(title="The classic upload endpoint, copying in chunks")

    def log_file_upload(filename: str) -> None:
        with sqlite3.connect(db_path) as db:
            db.execute("INSERT INTO uploads (filename) VALUES (?)", (filename,))
        db.close()

    @app.post("/upload-file/")
    async def upload_file(file: UploadFile = File(...), background_tasks: BackgroundTasks = BackgroundTasks()):
        with open(os.path.join(upload_dir, file.filename), "wb") as out:
            while chunk := await file.read(CHUNK):
                out.write(chunk)
        background_tasks.add_task(log_file_upload, file.filename)
        return {"message": "uploaded"}

    @app.get("/ping")
    async def ping():
        return {"pong": True}

    return app
