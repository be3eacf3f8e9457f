"""Peak server memory for large uploads: the classic endpoint, its usual fix, and lesson 2's solution.

Each app runs on uvicorn in its own child process (course.children). After a warm-up upload, and
before each round, the script reads the child's resident memory (VmRSS), resets the kernel's peak
counter, sends the uploads (from a generator: the client holds 1 MiB, not the file), waits until
the server's background work is over and reads the peak (VmHWM). The table shows the peak over
idle, and the bytes the server process wrote per byte uploaded (Starlette's spool file counts).
Target for the solution: at most +16 MiB.

    .venv/bin/python bench/upload_memory.py            # 200 MiB, 1 and 3 at once (about a minute)
    .venv/bin/python bench/upload_memory.py --mib 50   # quicker
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from course.children import serve_in_child
from course.uploads import MiB, measure_upload_peaks

APPS = {
    "classic: await file.read()": ("course.specimens.classic_upload:create_classic_app", "/upload-file/"),
    "usual fix: UploadFile in chunks": ("course.specimens.classic_upload:create_chunked_copy_app", "/upload-file/"),
    "lesson 2 solution: streamed": ("solutions.l02_uploads:create_app", "/uploads"),
}
TARGET_MIB = 16


def measure(size: int, counts: list[int]) -> list[dict]:
    rows = []
    for label, (factory, path) in APPS.items():
        folder = Path(tempfile.mkdtemp(prefix="upload-bench-"))
        (folder / "uploads").mkdir()
        kwargs = {"upload_dir": str(folder / "uploads"), "db_path": str(folder / "log.db")}
        if factory.startswith("solutions."):
            kwargs["max_upload_bytes"] = size + MiB
        try:
            with serve_in_child(factory, name="upload-bench", factory_kwargs=kwargs) as child:
                results = measure_upload_peaks(child, path, size, counts)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        rows.extend({"app": label, **result} for result in results)
        print(f"  measured {label}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="size of each upload in MiB (default 200)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 3], help="uploads at once (default 1 3)")
    args = parser.parse_args(argv)
    size = args.mib * MiB
    rows = measure(size, args.counts)
    print(f"\nPeak server RSS over idle, {args.mib} MiB uploads (VmHWM - VmRSS at idle)\n")
    print(f"| {'app':<32} | uploads at once | idle RSS MiB | peak RSS MiB | peak over idle MiB "
          "| written / uploaded | statuses | seconds |")
    print(f"|{'-' * 34}|-----------------|--------------|--------------|--------------------"
          "|--------------------|----------|---------|")
    for row in rows:
        statuses = ",".join(sorted({str(code) for code in row["codes"]}))
        written = row["written"] / (size * row["uploads"])
        print(f"| {row['app']:<32} | {row['uploads']:>15} | {row['idle'] / MiB:>12.1f} | {row['peak'] / MiB:>12.1f} "
              f"| {row['over_idle'] / MiB:>+18.1f} | {written:>17.2f}x | {statuses:>8} | {row['seconds']:>7.2f} |")
    solution = [row for row in rows if row["app"].startswith("lesson")]
    worst = max(row["over_idle"] for row in solution) / MiB
    verdict = "meets" if worst <= TARGET_MIB else "MISSES"
    print(f"\nlesson 2 solution: worst peak over idle {worst:+.1f} MiB, {verdict} the target of +{TARGET_MIB} MiB")
    if not all(row["peak_was_reset"] for row in rows):
        print("note: /proc/<pid>/clear_refs was not writable; peaks include start-up")
    return 0 if worst <= TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
