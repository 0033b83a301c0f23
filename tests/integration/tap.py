"""TAP output for the Python checkers of the integration tests (check_run.py, compare_runs.py).

  import tap
  tap.report(ok, name, detail)   # "ok - NAME", or "not ok - NAME" and "# DETAIL"
  tap.finish()                   # exits 1 if any report failed, else 0
"""
import sys

failures = 0


def report(ok, name, detail=""):
    global failures
    print(("ok - " if ok else "not ok - ") + name)
    if not ok:
        failures += 1
        print("# " + detail)


def finish():
    sys.exit(1 if failures else 0)
