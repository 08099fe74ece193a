"""``rlcapture report``: the page, opened in a real headless Chromium.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` and
selenium; without them they skip, naming the apt command (.ci/run installs them).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from rlcapture.cli import main
from rlcapture.results.report import embed_json, write_report

APT = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends chromium chromium-driver"
)
EVIL_ERROR = "<img src=x onerror=alert(1)>"
EVIL_ENV = "<b>bold</b>Env-v0"


def _record(out: Path, *extra: str) -> None:
    argv = ["record", "CartPole-v1", "-n", "2", "-k", "4", "--keyframes", "--max-episode-steps", "60",
            "--out", str(out), "-q", *extra]  # fmt: skip
    assert main(argv) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain run, a second run on the same seeds, and a --seeds 0,1 run."""
    base = tmp_path_factory.mktemp("report")
    _record(base / "a")
    _record(base / "b", "--policy", "random", "--seed", "0", "--crf", "30")
    _record(base / "seeds", "--seeds", "0,1")
    return {"a": base / "a", "b": base / "b", "seeds": base / "seeds", "base": base}


@pytest.fixture
def browser():
    """A headless Chromium driven by selenium, with its console log readable.

    One per test: the leak check of every test wants no child process left.
    """
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"pip install selenium; and {APT}")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip(f"no chromium/chromedriver: {APT}")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--mute-audio", "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, page: Path) -> None:
    driver.get_log("browser")  # drop the last page's log; this page's is read after the checks
    driver.get(page.resolve().as_uri())


def _errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]


def _videos_load_and_play(driver) -> int:
    """Every <video> gets its metadata and a duration, and its time advances once playing."""
    states = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const videos = Array.from(document.querySelectorAll('video'));
        const loaded = v => new Promise(ok => {
          if (v.readyState >= 1) return ok();
          v.addEventListener('loadedmetadata', ok, {once: true});
          v.addEventListener('error', ok, {once: true});
          v.load();
        });
        Promise.all(videos.map(loaded)).then(() => done(videos.map(v => ({
          src: v.getAttribute('src'), ready: v.readyState, duration: v.duration,
          error: v.error && v.error.code}))));
        """
    )
    assert states, "the page has videos"
    for s in states:
        assert s["error"] is None and s["ready"] >= 1 and s["duration"] > 0, s
    played = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const videos = Array.from(document.querySelectorAll('video'));
        const run = v => new Promise(ok => {
          v.muted = true; v.currentTime = 0;
          const start = performance.now();
          v.play().catch(e => ok({src: v.src, t: -1, why: String(e)}));
          const check = () => {
            if (v.currentTime > 0 || v.ended || performance.now() - start > 10000) {
              v.pause(); ok({src: v.src, t: v.currentTime, ended: v.ended});
            } else setTimeout(check, 20);
          };
          check();
        });
        (async () => { const out = []; for (const v of videos) out.push(await run(v)); done(out); })();
        """
    )
    for p in played:
        assert p["t"] > 0, p
    return len(states)


def test_embedded_json_cannot_end_its_script() -> None:
    text = embed_json({"e": "</script><script>alert(1)</script>", "a": "<!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"e": "</script><script>alert(1)</script>", "a": "<!-- & -->"}


def test_report_files_and_errors(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["report", str(runs["a"])]) == 0
    page = runs["a"] / "report.html"
    assert f"wrote {page}" in capsys.readouterr().out
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # no network
    assert (runs["a"] / "report_files" / "report.js").is_file()
    assert (runs["a"] / "report_files" / "curve-0.svg").read_text().lstrip().startswith("<?xml")
    data = json.loads(html.split('id="rlcapture-data">')[1].split("</script>")[0])
    videos = [e["video"] for e in data["episodes"] if e["video"]]
    assert videos and all((runs["a"] / v).is_file() for v in videos)  # relative to the page
    assert main(["report", str(runs["a"]), str(runs["b"])]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err


def test_one_run_in_a_browser(runs: dict[str, Path], browser) -> None:
    from selenium.webdriver.common.by import By

    page = write_report([runs["a"]], runs["base"] / "page-a")
    _open(browser, page)
    rows = browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")
    assert len(rows) == 4
    # sorting by return orders the rows, and a second click reverses them
    header = browser.find_element(By.CSS_SELECTOR, '#episodes th[data-key="return"]')
    col = [h.get_attribute("data-key") for h in browser.find_elements(By.CSS_SELECTOR, "#episodes th")].index("return")

    def returns() -> list[float]:
        return [float(r.find_elements(By.TAG_NAME, "td")[col].text)
                for r in browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")]  # fmt: skip

    header.click()
    assert returns() == sorted(returns()) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert returns() == sorted(returns(), reverse=True)
    # filtering hides the rows that do not match
    box = browser.find_element(By.ID, "filter")
    box.send_keys("no such text")
    assert all(not r.is_displayed() for r in browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr"))
    box.clear()
    box.send_keys("terminated")
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr") if r.is_displayed()]
    assert len(visible) > 0 and all("terminated" in r.text for r in visible)
    # keyframes as thumbnails, loaded
    thumbs = browser.execute_script(
        "return Array.from(document.querySelectorAll('.thumbs img')).map(i => [i.complete, i.naturalWidth]);"
    )
    assert len(thumbs) == 8
    browser.execute_script("document.querySelectorAll('.thumbs img').forEach(i => i.loading = 'eager');")
    widths = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const imgs = Array.from(document.querySelectorAll('.thumbs img'));
        Promise.all(imgs.map(i => i.decode().catch(() => null))).then(() => done(imgs.map(i => i.naturalWidth)));
        """
    )
    assert all(w > 0 for w in widths), widths
    assert _videos_load_and_play(browser) == 4
    # a keyframe seeks its video to that step (the last keyframe: near the end)
    card = browser.find_elements(By.CSS_SELECTOR, "#videos .card")[0]
    card.find_elements(By.CSS_SELECTOR, ".thumbs img")[-1].click()
    t, duration = browser.execute_script(
        "const v = document.querySelector('#videos .card video'); return [v.currentTime, v.duration];"
    )
    assert duration > 0 and t > duration / 2
    assert "95% bootstrap CI" in browser.find_element(By.ID, "summary").text
    assert _errors(browser) == []


def test_seeds_and_comparison_in_a_browser(runs: dict[str, Path], browser) -> None:
    from selenium.webdriver.common.by import By

    page = write_report([runs["seeds"]])
    _open(browser, page)
    summary = browser.find_element(By.ID, "summary").text
    assert "\n" in summary and len(browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")) == 3  # all, 0, 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")) == 8
    assert _videos_load_and_play(browser) == 8
    assert _errors(browser) == []

    page = write_report([runs["a"], runs["b"]], runs["base"] / "compare")
    _open(browser, page)
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare tbody tr")
    seeds_a = {r["seed"] for r in map(json.loads, (runs["a"] / "episodes.jsonl").read_text().splitlines())}
    assert len(rows) == len(seeds_a) == 4  # the same --seed: the same reset seeds
    cards = browser.find_elements(By.CSS_SELECTOR, ".compare-card")
    assert len(cards) == 4 and all(len(c.find_elements(By.TAG_NAME, "video")) == 2 for c in cards)
    assert _videos_load_and_play(browser) == 16
    cards[0].find_element(By.CSS_SELECTOR, "button.play-together").click()
    time.sleep(0.3)
    playing = browser.execute_script(
        "return Array.from(document.querySelectorAll('.compare-card')[0].querySelectorAll('video'))"
        ".map(v => !v.paused || v.ended || v.currentTime > 0);"
    )
    assert playing == [True, True]
    assert _errors(browser) == []


def test_training_rounds_in_a_browser(runs: dict[str, Path], browser) -> None:
    """A RecordCallback's folder (``step-T/`` rounds): a row per round, the timestep of each episode."""
    from selenium.webdriver.common.by import By

    rounds = runs["base"] / "rounds"
    for t in (100, 200):  # the layout RecordCallback writes: one recording per round
        shutil.copytree(runs["a"], rounds / f"step-{t}", ignore=shutil.ignore_patterns("report*"))
    page = write_report([rounds])
    _open(browser, page)
    head = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#summary thead th")]
    assert head[2] == "timestep"
    labels = [r.find_elements(By.TAG_NAME, "td")[2].text
              for r in browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")]  # fmt: skip
    assert labels == ["all", "100", "200"]
    keys = [h.get_attribute("data-key") for h in browser.find_elements(By.CSS_SELECTOR, "#episodes th")]
    col = keys.index("timestep")
    steps = [r.find_elements(By.TAG_NAME, "td")[col].text
             for r in browser.find_elements(By.CSS_SELECTOR, "#episodes tbody tr")]  # fmt: skip
    assert sorted(steps) == ["100"] * 4 + ["200"] * 4
    curve = browser.find_element(By.CSS_SELECTOR, "img.curve")
    assert "training timesteps" in curve.get_attribute("alt")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", curve) > 0
    assert _videos_load_and_play(browser) == 8  # each round's videos, by their path under step-T/
    assert _errors(browser) == []


def test_markup_in_a_manifest_stays_text(tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By

    run = tmp_path / "evil"
    run.mkdir()
    line = {"env": 0, "episode": 0, "seed": 3, "return": 1.0, "length": 1, "time": 0.1, "video": None,
            "frames": 0, "dropped": 0, "end": "error", "error": EVIL_ERROR, "why": "</script><i>x</i>"}  # fmt: skip
    (run / "episodes.jsonl").write_text(json.dumps(line) + "\n")
    (run / "summary.json").write_text(json.dumps({"env_id": EVIL_ENV}))
    page = write_report([run])
    assert EVIL_ERROR not in page.read_text() and "</script><i>" not in page.read_text()
    _open(browser, page)
    assert browser.execute_script("return document.querySelectorAll('main img[src=\"x\"], main b, main i').length") == 0
    text = browser.find_element(By.TAG_NAME, "main").text
    assert EVIL_ERROR in text and EVIL_ENV in text
    assert _errors(browser) == []
