"""The example workflow started from the dashboard, in a real browser.

The Rust test records the python-module example's one model answer to a
cassette, then starts `warden serve` answering from it (the replay model:
no network, no key) and runs this with WARDEN_BASE, WARDEN_KEY and
WARDEN_SHOTS. Pick the example on "Start a run", watch each task of its
graph reach its final colour without reloading the page, see the model
call and the tool calls on the timeline, open the module the coder wrote.
"""

import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

sys.path.insert(0, os.path.dirname(__file__))
from dashboard import browser, click, sign_in, statuses, wait  # noqa: E402

BASE = os.environ["WARDEN_BASE"]
TASKS = {"write", "test", "review"}


def fill(driver, task):
    """The colour a task's box is drawn in."""
    return driver.execute_script(
        "const r = document.querySelector(`#dag g.task[data-task='${arguments[0]}'] rect`);"
        "return r && getComputedStyle(r).fill;",
        task,
    )


def main():
    d = browser()
    try:
        sign_in(d, os.environ["WARDEN_KEY"])
        d.find_element(By.LINK_TEXT, "Start a run").click()
        Select(d.find_element(By.ID, "pick")).select_by_value("python-module")
        d.find_element(By.CSS_SELECTOR, "form.start button").click()
        wait(d, 30).until(lambda d: "/runs/" in d.current_url and not d.current_url.endswith("/new"))
        d.execute_script("window.notReloaded = true")
        # The graph holds the example's three tasks at once.
        first = wait(d, 30).until(lambda d: (now := statuses(d)) and set(now) == TASKS and now)
        seen = set(first.values())

        def finished(d):
            now = statuses(d)
            seen.update(now.values())
            return now == {t: "done" for t in TASKS}

        wait(d, 300).until(finished)
        wait(d, 10).until(lambda d: d.find_element(By.ID, "run-status").text == "succeeded")
        assert d.execute_script("return window.notReloaded === true"), "the page was reloaded"
        # Seen going, then done without a reload: the page followed the run
        # live. On a loaded machine the run may end before the browser draws
        # its page at all; restart.py watches a run that is held going.
        if seen == {"done"}:
            print("example: the run had ended before its page was drawn", flush=True)
        # Drawn in the stylesheet's colour for done (#e8f6ee).
        fills = [fill(d, t) for t in sorted(TASKS)]
        assert fills == ["rgb(232, 246, 238)"] * 3, fills
        events = wait(d, 10).until(lambda d: d.find_element(By.ID, "timeline").text)
        for expected in ("asked tape/", "called fs.write_file", "called exec.run_python", "ended succeeded"):
            assert expected in events, f"{expected!r} is not on the timeline: {events}"
        d.save_screenshot(os.path.join(os.environ["WARDEN_SHOTS"], "example-run.png"))
        # The module the coder wrote, opened from the artifacts.
        wait(d, 10).until(lambda d: click(d, By.LINK_TEXT, "stats.py"))
        wait(d, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "pre.artifact"))
        module = d.find_element(By.CSS_SELECTOR, "pre.artifact").text
        assert "def median(xs):" in module, module
        print("example: ok", flush=True)
    finally:
        d.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        print(f"example: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
