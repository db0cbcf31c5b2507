"""Every drain case of test_drain.py again, with two event loops, each with
its own SO_REUSEPORT listener, drained together."""
import os
import runpy

os.environ["GRACED_TEST_WORKERS"] = "2"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "test_drain.py"), run_name="__main__")
