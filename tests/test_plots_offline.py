"""`dvc plots show` / `dvc plots diff` pages render with no network.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline it stays blank;
the project's template (.dvc/config plots.html_template: plots_offline/template.html) carries them
inline. Each page opens in headless Chromium (Debian's package, `make chromium`) with name
resolution and proxy dead, driven over the DevTools protocol on a pipe: it reports console errors,
uncaught exceptions and every request, the pixels of each plot's canvas and a full-page
screenshot. DVC's own default page is the negative control: the same checks must fail on it.
"""

import base64
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dvc_render.html import PAGE_HTML
from PIL import Image

from plots_offline.build import PACKAGES, TEMPLATE, page
from tests.test_e2e import ROOT, Repo, tiny_params

CURVE_PLOTS = {"Top-1_accuracy_per_epoch__train_vs_validation_",
               "Loss_per_epoch__train_vs_validation_"}
CONFUSION_PLOT = "Test_confusion_matrix"
# A drawn plot has coloured marks (curves, matrix cells, bars); axes, grid and text are grey, and a
# legend's coloured symbols alone stay under 100 pixels. Drawn plots have 900 to 15,000 here.
MIN_COLOURED_PIXELS = 300
# Per plot canvas: pixels whose channels differ by more than 60 (coloured, not grey or blank).
COLOURED_PIXELS_JS = """ids => Object.fromEntries(ids.map(id => {
    const canvas = document.getElementById(id)?.querySelector('canvas');
    if (!canvas) return [id, 0];
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let coloured = 0;
    for (let i = 0; i < px.length; i += 4) {
        const [r, g, b, a] = px.slice(i, i + 4);
        if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
    }
    return [id, coloured];
}))"""
RENDER_TIMEOUT = 60  # seconds; a page renders in 2-15 s on a busy 2-core machine


class Chromium:
    """Headless Chromium driven over the DevTools protocol on fds 3 (commands) and 4 (replies),
    with every network name unresolvable and a dead proxy: the machine is offline for it."""

    def __init__(self, profile: Path):
        executable = shutil.which("chromium")
        if not executable:
            pytest.fail("chromium is not on PATH: `make chromium` (as root) installs it")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # Moved above 4 first, so that 3<& and 4>& cannot overwrite one another; bash, as dash
        # redirects one-digit fds only.
        child_read, child_write = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
                                   for fd in (commands_read, replies_write))
        os.close(commands_read)
        os.close(replies_write)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                 f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
                 "--proxy-server=127.0.0.1:9", "--window-size=1280,1000", "about:blank"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{child_read} 4>&{child_write}',
             executable, *flags],
            pass_fds=(child_read, child_write), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(child_read)
        os.close(child_write)
        self._buffer = bytearray()
        self._last_id = 0
        self.events: list[dict] = []
        tab = next(target for target in self.send("Target.getTargets")["targetInfos"]
                   if target["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=tab["targetId"],
                                 flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", self.session)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while (reply := self._receive()).get("id") != self._last_id:
            self.events.append(reply)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    def wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._receive())

    def evaluate(self, function: str, *args):
        expression = f"({function})(...{json.dumps(args)})"
        return self.send("Runtime.evaluate", self.session, expression=expression,
                         returnByValue=True)["result"].get("value")

    def _receive(self) -> dict:
        while (end := self._buffer.find(b"\0")) < 0:
            ready, _, _ = select.select([self._replies], [], [], RENDER_TIMEOUT)
            assert ready, f"Chromium did not answer in {RENDER_TIMEOUT} s"
            chunk = os.read(self._replies, 1 << 20)
            assert chunk, "Chromium exited"
            self._buffer += chunk
        message = json.loads(self._buffer[:end])
        del self._buffer[:end + 1]
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):  # it may be gone already
            os.write(self._commands, b'{"id": 0, "method": "Browser.close"}\0')
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process.kill()
        self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


def vega_plots(page: Path) -> list[str]:
    """The ids of the page's Vega plots, as DVC wrote them (`vegaEmbed('#ID', spec)`)."""
    return re.findall(r"vegaEmbed\('#([^']+)'", page.read_text(encoding="utf-8"))


def open_offline(page: Path, profile: Path) -> dict:
    """Load ``page`` in offline Chromium until every Vega plot is drawn, Vega-Embed turns out to
    be missing, or RENDER_TIMEOUT; return what the browser saw."""
    plots = vega_plots(page)
    browser = Chromium(profile)
    try:
        browser.events.clear()  # so that the load event waited for is this page's
        browser.send("Page.navigate", browser.session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired")
        deadline = time.monotonic() + RENDER_TIMEOUT
        while True:
            coloured = browser.evaluate(COLOURED_PIXELS_JS, plots)
            if (min(coloured.values()) >= MIN_COLOURED_PIXELS or time.monotonic() > deadline
                    or browser.evaluate("() => typeof vegaEmbed") != "function"):
                break
            time.sleep(0.2)
        size = browser.send("Page.getLayoutMetrics", browser.session)["cssContentSize"]
        screenshot = browser.send("Page.captureScreenshot", browser.session, format="png",
                                  captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": size["width"],
                                        "height": size["height"], "scale": 1})
    finally:
        browser.close()
    return {"coloured": coloured, "events": browser.events,
            "screenshot": base64.b64decode(screenshot["data"])}


def offline_problems(seen: dict) -> dict[str, list[str]]:
    """What is wrong with a page that should render offline, by kind (empty when nothing is)."""
    problems: dict[str, list[str]] = {}
    for event in seen["events"]:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:")):
                problems.setdefault("network request", []).append(url)
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"])
            problems.setdefault("console error", []).append(text)
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems.setdefault("console error", []).append(
                details.get("exception", {}).get("description", details["text"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.setdefault("console error", []).append(params["entry"]["text"])
    undrawn = [plot for plot, pixels in seen["coloured"].items() if pixels < MIN_COLOURED_PIXELS]
    if undrawn:
        problems["plot not drawn"] = undrawn
    if non_white_fraction(seen["screenshot"]) < 0.01:
        problems["blank screenshot"] = [f"{non_white_fraction(seen['screenshot']):.4f}"]
    return problems


def non_white_fraction(png: bytes) -> float:
    grey = Image.open(io.BytesIO(png)).convert("L")
    histogram = grey.histogram()
    return sum(histogram[:240]) / sum(histogram)


def test_template_is_the_build_of_the_pinned_scripts():
    """The committed template is exactly what plots_offline/build.py makes of the pinned Vega
    builds, and has no scripts placeholder (DVC would put its CDN <script> tags there)."""
    html = TEMPLATE.read_text(encoding="utf-8")
    codes = re.findall(r"<script>/\* [\w-]+ [\d.]+, BSD-3-Clause \*/\n(.*?)\n</script>", html,
                       re.DOTALL)
    assert [hashlib.sha256(code.encode()).hexdigest() for code in codes] == [
        sha256 for *_, sha256 in PACKAGES]
    assert page(codes) == html
    assert "{plot_divs}" in html and "{scripts}" not in html


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    """This project with the data of its Vega plots committed: the test split's predictions and
    per-class table of the committed run, and four epochs of training curves. The report's PNG
    plots are left out (DVC says it failed to load them): images need no script, and without
    them the default page's screenshot is blank offline."""
    repo = Repo.project(tmp_path_factory.mktemp("project"), tiny_params())
    curves = repo.path / "metrics/train/plots/metrics"
    for split, accuracy in (("train", [0.1, 0.4, 0.6, 0.75]), ("eval", [0.05, 0.3, 0.55, 0.8])):
        (curves / split).mkdir(parents=True)
        loss = [round(1 - a, 2) for a in accuracy]
        for name, values in (("accuracy", accuracy), ("loss", loss)):
            with open(curves / split / f"{name}.tsv", "w", newline="") as f:
                writer = csv.writer(f, delimiter="\t", lineterminator="\n")
                writer.writerow(["step", name])
                writer.writerows(enumerate(values))
    for name in ("plots/predictions.csv", "metrics/per_class.csv"):
        (repo.path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, repo.path / name)
    repo.commit("plots data")
    return repo


@pytest.mark.e2e
def test_show_page_renders_offline_anywhere(repo, tmp_path):
    # Written outside the repo, then moved: the page carries its scripts, so it still works.
    repo.dvc("plots", "show", "-o", str(tmp_path / "written"))
    shutil.move(tmp_path / "written", tmp_path / "moved")
    page = tmp_path / "moved/index.html"
    assert CURVE_PLOTS | {CONFUSION_PLOT} <= set(vega_plots(page))

    seen = open_offline(page, tmp_path / "profile")
    (tmp_path / "show.png").write_bytes(seen["screenshot"])
    assert offline_problems(seen) == {}, f"screenshot: {tmp_path / 'show.png'}"


@pytest.mark.e2e
def test_diff_page_renders_offline(repo, tmp_path):
    accuracy = repo.path / "metrics/train/plots/metrics/eval/accuracy.tsv"
    committed = accuracy.read_text()
    accuracy.write_text(committed.replace("3\t0.8\n", "3\t0.9\n"))  # a better last epoch
    assert accuracy.read_text() != committed
    try:
        repo.dvc("plots", "diff", "HEAD", "-o", str(tmp_path / "diff"))
    finally:
        repo.run("git", "checkout", "-q", "--", ".")
    page = tmp_path / "diff/index.html"
    html = page.read_text(encoding="utf-8")
    assert '"rev": "HEAD"' in html and '"rev": "workspace"' in html

    seen = open_offline(page, tmp_path / "profile")
    (tmp_path / "diff.png").write_bytes(seen["screenshot"])
    assert offline_problems(seen) == {}, f"screenshot: {tmp_path / 'diff.png'}"


@pytest.mark.e2e
def test_default_cdn_page_fails_the_same_checks_offline(repo, tmp_path):
    """The negative control: DVC's built-in page, for the same plots, is blank offline."""
    default = tmp_path / "default.html"
    default.write_text(PAGE_HTML, encoding="utf-8")
    repo.dvc("plots", "show", "-o", str(tmp_path / "plots"), "--html-template", str(default))
    page = tmp_path / "plots/index.html"

    problems = offline_problems(open_offline(page, tmp_path / "profile"))
    assert set(problems) == {"network request", "console error", "plot not drawn",
                             "blank screenshot"}
    assert all("cdn.jsdelivr.net" in url for url in problems["network request"])
    assert set(problems["plot not drawn"]) == set(vega_plots(page))
