"""A notebook's widget in a real browser: Voilà serves notebook 00 on localhost, headless Chromium opens it,
the test checks that the widget renders and that changing it redraws its output, and saves screenshots
(``artifacts/`` or ``$TUTORFINETUNE_ARTIFACTS``) as CI artifacts.

Needs Debian's ``chromium`` (``.ci/run`` installs it where apt is available) and the dev extras ``voila`` and
``playwright`` (only the Python driver: the browser is Debian's, never downloaded). Skips with a message
where one is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "00_start_here.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"Voilà exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "voila/static/", timeout=2):
                return
        except urllib.error.HTTPError:  # any HTTP answer: the server is up
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"Voilà did not answer at {url} within {timeout} s")


def _diagnose(page, proc: subprocess.Popen, artifacts: Path) -> None:
    """What the page had rendered (Voilà streams cell by cell: the last cell shown is where it stopped), the
    busiest processes, and the stacks of Voilà's kernel (SIGABRT with PYTHONFAULTHANDLER set), for the log."""
    import signal

    try:
        (artifacts / "browser-00-failure.html").write_text(page.content(), encoding="utf-8")
        page.screenshot(path=str(artifacts / "browser-00-failure.png"), full_page=True)
    except Exception as e:  # the page itself may be what failed
        print(f"could not save the page: {e}")
    ps = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True)
    print("busiest processes:\n" + "\n".join(line[:200] for line in ps.stdout.splitlines()[:15]))
    try:
        import psutil

        for child in psutil.Process(proc.pid).children(recursive=True):
            print(f"kernel process {child.pid}: {' '.join(child.cmdline())[:160]} (stacks follow in the Voilà log)")
            os.kill(child.pid, signal.SIGABRT)
        time.sleep(2)
    except Exception as e:
        print(f"could not signal the kernel: {e}")


@pytest.mark.slow
def test_widget_renders_and_updates_in_headless_chromium(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium not found: install Debian's chromium (apt-get install chromium) to run the browser test.")
    pytest.importorskip("voila", reason="voila is not installed: pip install -e '.[dev]'")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    artifacts = Path(os.environ.get("TUTORFINETUNE_ARTIFACTS", REPO / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    served = tmp_path / NOTEBOOK.name  # run it beside its own store, never in the repository
    shutil.copy(NOTEBOOK, served)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, TUTORFINETUNE_PROGRESS="auto", MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONFAULTHANDLER="1")  # a kernel that hangs dumps its threads' stacks into the log (see _diagnose)
    log = open(tmp_path / "voila.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voila", str(served), "--no-browser", f"--port={port}",
                             "--Voila.ip=127.0.0.1", "--show_tracebacks=True"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(url, proc, 60)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            # Hermetic: the page asks CDNs for icon fonts and Colab for its badge. Offline machines may drop
            # those packets instead of refusing them, and the page's load event then waits minutes (CI did).
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((url, "data:"))
                       else route.abort())  # the same rule as the site check (book/build.py)
            # Voilà streams the page while it runs the whole notebook (ci defaults): wait for the widget,
            # not for the load event.
            # One retry, on a fresh page (Voilà starts a fresh kernel per request): 2 of 4 clean-clone suites
            # under pytest -n 2 here once saw Voilà start the kernel and then render nothing for 240 s, while
            # the test alone and beside the Ray, DDP and notebook tests passed in 30-40 s. The first failure's
            # page, process list and kernel stacks are kept (browser-00-failure.*, the Voilà log) so a
            # recurrence says why; a widget that never renders still fails the test.
            for attempt in (1, 2):
                page.goto(url, timeout=240_000, wait_until="commit")
                try:
                    select = page.wait_for_selector(".widget-dropdown select", timeout=180_000)
                    break
                except sync_api.TimeoutError:
                    _diagnose(page, proc, artifacts)
                    if attempt == 2:
                        raise
                    warnings.warn(f"Voilà rendered no widget within 180 s; retrying once (diagnostics in {artifacts})",
                                  stacklevel=1)
            img = page.wait_for_selector(".widget-interact .widget-output img", timeout=60_000)
            before = img.get_attribute("src")
            text_before = page.inner_text(".widget-interact .widget-output")
            first = select.evaluate("s => s.value")
            options = select.evaluate("s => Array.from(s.options).map(o => o.textContent)")
            assert len(options) >= 2, options
            widget = page.locator(".widget-interact").first
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=str(artifacts / "browser-00-widget-before.png"))
            other = next(o for o in options if o != select.evaluate("s => s.options[s.selectedIndex].textContent"))
            page.select_option(".widget-dropdown select", label=other)
            page.wait_for_function(
                "src => { const i = document.querySelector('.widget-interact .widget-output img');"
                " return i && i.getAttribute('src') !== src; }", arg=before, timeout=60_000)
            text = page.inner_text(".widget-interact .widget-output")
            page.wait_for_timeout(500)  # let the new figure finish painting
            widget.screenshot(path=str(artifacts / "browser-00-widget-after.png"))
            page.screenshot(path=str(artifacts / "browser-00-page.png"))
            browser.close()
        assert first is not None and text != text_before  # new examples printed for the domain just picked
        shots = [(artifacts / f"browser-00-widget-{w}.png").read_bytes() for w in ("before", "after")]
        assert len(shots[1]) > 10_000 and shots[0] != shots[1]  # the rendered widget changed on screen
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.copy(tmp_path / "voila.log", artifacts / "browser-voila.log")
