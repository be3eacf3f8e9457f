"""The graded checks prove themselves: untouched stubs score zero, in a separate run.

(Full marks against solutions/ is the graded part of this same `make test` run.)
"""

import json
import subprocess
import sys

from course.grading import GRADED_DIR, ROOT


def test_untouched_stubs_score_zero_points(tmp_path):
    report_path = tmp_path / "stubs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(GRADED_DIR), "--target=lessons", f"--grade-json={report_path}",
         "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert report_path.exists(), proc.stdout + proc.stderr
    report = json.loads(report_path.read_text())
    earned = [f"{lesson}: {c['name']}" for lesson, entry in report["lessons"].items()
              for c in entry["checks"] if c["points"]]
    assert report["score"] == 0, f"checks that pass on an untouched stub grade nothing: {earned}"
    assert report["max_score"] > 0
    every_check = {c["name"] for entry in report["lessons"].values() for c in entry["checks"]}
    for entry in report["lessons"].values():
        for c in entry["checks"]:
            assert c["hint"].strip(), f"{c['name']} has no hint"
    assert len(every_check) >= len(list(GRADED_DIR.glob("test_*.py"))), "a graded file has no checks"
