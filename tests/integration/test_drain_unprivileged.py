"""Every drain case of test_drain.py again with the daemon running as an
unprivileged user (as in a container), where some kernels refuse socket
filters and the listener falls back to a backlog of 0. Skipped unless the
tests run as root (they need to start the daemon as another user)."""
import os
import runpy
import sys

if os.geteuid() != 0:
    print("SKIP: needs root to run the daemon as nobody")
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(77)
os.environ["GRACED_TEST_USER"] = "nobody"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "test_drain.py"), run_name="__main__")
