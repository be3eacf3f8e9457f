"""The README's lab command starts JupyterLab on 127.0.0.1 and serves the course's notebooks."""

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from course.grading import ROOT

TOKEN = "course-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    port = free_port()
    log = (tmp_path / "lab.log").open("w")
    args = f"LAB_ARGS=--no-browser --ServerApp.port={port} --ServerApp.token={TOKEN} --ServerApp.port_retries=0"
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", args], cwd=ROOT, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(f"{base}/api/status", params={"token": TOKEN}, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(f"JupyterLab did not come up:\n{(tmp_path / 'lab.log').read_text()}")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # make, jupyter and its children share the session
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def test_make_lab_serves_the_notebooks(lab):
    headers = {"Authorization": f"token {TOKEN}"}
    listing = httpx.get(f"{lab}/api/contents/", headers=headers, timeout=10).json()
    names = {item["name"] for item in listing["content"]}
    assert {"00_server_in_the_kernel.ipynb", "01_request_cycle.ipynb"} <= names, names
    page = httpx.get(f"{lab}/lab/tree/01_request_cycle.ipynb", headers=headers, timeout=10)
    assert page.status_code == 200 and "JupyterLab" in page.text
