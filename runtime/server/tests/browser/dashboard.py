"""The dashboard in a real browser: Debian's chromium and chromedriver,
driven by selenium (PyPI), against a warden serve the Rust test started.

Environment: WARDEN_BASE (http://127.0.0.1:PORT), WARDEN_KEY_A and
WARDEN_KEY_B (two tenants' keys), WARDEN_RUN (a run of tenant A),
WARDEN_WORKFLOW (a workflow whose tool result and task summary hold
markup that must not run), WARDEN_SHOTS (where screenshots go). Exits non-zero, saying what failed, on the first failure.
"""

import os
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ.get("WARDEN_BASE", "")
RUN = os.environ.get("WARDEN_RUN", "")
SHOTS = os.environ.get("WARDEN_SHOTS", "")


def browser():
    options = Options()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(driver), options=options)


def wait(driver, seconds):
    """A wait that retries when the live stream redraws what it reads."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def click(driver, by, what):
    """Clicks an element the page may redraw under us; False to retry."""
    try:
        driver.find_element(by, what).click()
        return True
    except (StaleElementReferenceException, NoSuchElementException):
        return False


def statuses(driver):
    """Each task of the run page's graph, with its status."""
    return {
        n.get_attribute("data-task"): n.get_attribute("data-status")
        for n in driver.find_elements(By.CSS_SELECTOR, "#dag g.task")
    }


def sign_in(driver, key):
    driver.get(BASE + "/")
    assert driver.current_url.endswith("/sign-in"), driver.current_url
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form.sign-in button").click()
    wait(driver, 10).until(lambda d: not d.current_url.endswith("/sign-in"))


def main():
    os.makedirs(SHOTS, exist_ok=True)
    a = browser()
    try:
        sign_in(a, os.environ["WARDEN_KEY_A"])
        assert "Runs of" in a.page_source, a.page_source
        # The run the test submitted is listed and linked.
        wait(a, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, f'a[href="/runs/{RUN}"]'))
        # Its page lists its artifacts; one opens as text.
        a.get(f"{BASE}/runs/{RUN}")
        # The live stream redraws the list as it (re)connects: click what
        # is there when it holds still.
        wait(a, 10).until(lambda d: click(d, By.LINK_TEXT, "notes.txt"))
        wait(a, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "pre.artifact"))
        assert "written by the run" in a.find_element(By.CSS_SELECTOR, "pre.artifact").text
        # Start another from the page, as a user would.
        a.find_element(By.LINK_TEXT, "Start a run").click()
        a.find_element(By.ID, "workflow").send_keys(os.environ["WARDEN_WORKFLOW"])
        a.find_element(By.CSS_SELECTOR, "form.start button").click()
        wait(a, 10).until(lambda d: "/runs/" in d.current_url and not d.current_url.endswith("/new"))
        started = a.current_url.rsplit("/", 1)[1]
        # Every task reaches its final colour without a reload.
        def settled(d):
            nodes = d.find_elements(By.CSS_SELECTOR, "#dag g.task")
            return nodes and all(n.get_attribute("data-status") == "done" for n in nodes)
        wait(a, 60).until(settled)
        wait(a, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline li.run-finished"))
        wait(a, 10).until(lambda d: d.find_element(By.ID, "run-status").text == "succeeded")
        # The tool's output is on the page as text, and ran nothing.
        text = wait(a, 10).until(lambda d: d.find_element(By.ID, "timeline").text)
        assert "<script>window.owned=1</script>" in text, text
        # The task's summary too, on the timeline and as its box's title.
        assert '<script>window.owned=4</script><img src=x onerror="window.owned=5"> greeted' in text, text
        title = a.execute_script("return document.querySelector('#dag g.task title').textContent")
        assert "<script>window.owned=4</script>" in title, title
        assert a.execute_script("return window.owned === undefined"), "a guest's markup ran"
        assert not a.find_elements(By.CSS_SELECTOR, "#timeline script, #timeline img, #dag script, #dag img")
        a.save_screenshot(os.path.join(SHOTS, "run.png"))

        a.find_element(By.LINK_TEXT, "Usage").click()
        wait(a, 10).until(lambda d: "Usage of" in d.page_source)
        assert a.find_elements(By.CSS_SELECTOR, "figure.chart svg")
        a.save_screenshot(os.path.join(SHOTS, "usage.png"))

        a.find_element(By.LINK_TEXT, "Audit").click()
        assert "is whole" in a.page_source, a.page_source

        # A form posted from elsewhere (no token) is refused.
        a.execute_script("""
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/runs/new';
            const w = document.createElement('input');
            w.name = 'goal'; w.value = 'forged';
            f.appendChild(w); document.body.appendChild(f); f.submit();
        """)
        wait(a, 10).until(lambda d: "Refused" in d.page_source)
        assert "not from this session" in a.page_source, a.page_source
    finally:
        a.quit()

    b = browser()
    try:
        sign_in(b, os.environ["WARDEN_KEY_B"])
        # Tenant B's list shows neither of A's runs, and their links are
        # "no such run".
        for run in (RUN, started):
            assert run not in b.page_source
            b.get(f"{BASE}/runs/{run}")
            assert "There is no such run." in b.page_source, b.page_source
    finally:
        b.quit()
    print("dashboard: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line that says what failed
        print(f"dashboard: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        raise
