"""A run page kept current across a server restart, in a real browser.

The Rust test starts `warden serve`, submits a run whose second task
sleeps, and runs this with WARDEN_BASE, WARDEN_KEY, WARDEN_RUN and
WARDEN_RESTARTED (a file that appears once the server is back). This
prints `ready` when the page shows the first task done and the second
running; the test then kills the server (kill -9) and starts it again on
the same port. The page must then show every task done, without a reload.
"""

import os
import sys
import time

from selenium.webdriver.common.by import By

sys.path.insert(0, os.path.dirname(__file__))
from dashboard import browser, sign_in, statuses, wait  # noqa: E402

BASE = os.environ["WARDEN_BASE"]
RUN = os.environ["WARDEN_RUN"]


def main():
    d = browser()
    try:
        sign_in(d, os.environ["WARDEN_KEY"])
        d.get(f"{BASE}/runs/{RUN}")
        wait(d, 30).until(lambda d: statuses(d) == {"a": "done", "b": "running"})
        # A mark that a reload would wipe.
        d.execute_script("window.notReloaded = true")
        print("ready", flush=True)
        deadline = time.time() + 60
        while not os.path.exists(os.environ["WARDEN_RESTARTED"]):
            assert time.time() < deadline, "the server did not come back"
            time.sleep(0.1)
        wait(d, 60).until(lambda d: statuses(d) == {"a": "done", "b": "done"})
        wait(d, 10).until(lambda d: d.find_element(By.ID, "run-status").text == "succeeded")
        assert d.execute_script("return window.notReloaded === true"), "the page was reloaded"
        events = wait(d, 10).until(lambda d: d.find_element(By.ID, "timeline").text)
        assert "taken up again" in events, events
        print("restart: ok", flush=True)
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print(f"restart: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
