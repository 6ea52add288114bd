"""The report page in a real headless browser (Debian's chromium, driven by selenium through
Debian's chromium-driver): every image decodes with a natural size > 0, the console stays clean,
and every table-of-contents link lands on its section.

Skipped, with the reason, only when chromium is not installed on a developer's machine; in CI
(``CI=true``) a missing browser is a FAILURE (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIX = Path(__file__).parent / "fixtures"
CHROMIUM = [os.environ.get("BESA_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"]
DRIVER = [os.environ.get("BESA_CHROMEDRIVER"), "/usr/bin/chromedriver"]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _find(cands: list[str | None], name: str) -> str | None:
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


def _browser():
    chromium, driver = _find(CHROMIUM, "chromium"), _find(DRIVER, "chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromium-driver", driver)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install -y chromium chromium-driver; pip install selenium)"
        if IN_CI:
            pytest.fail(f"CI=true but {why}: .ci/run must install it")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900", "--allow-file-access-from-files"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(driver))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from reports.build import build_report

    out = tmp_path_factory.mktemp("browser")
    # two experiments: every figure kind, the comparison included, is on the page
    path = build_report([FIX / "default", FIX / "other"], out)
    drv = _browser()
    try:
        drv.set_page_load_timeout(120)
        drv.get(path.resolve().as_uri())
        yield drv
    finally:
        drv.quit()


def test_every_image_decodes(page):
    imgs = page.execute_script("return Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight]);")
    assert len(imgs) >= 8, imgs  # allocation, row sparsity, layer speedup, dots, Pareto, roofline, sweep, comparison
    for img_id, complete, w, h in imgs:
        assert complete and w > 0 and h > 0, (img_id, w, h)
    # decode() rejects an image the browser cannot decode, even one whose size attributes look fine
    bad = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.allSettled(Array.from(document.images).map(i => i.decode()))"
        ".then(r => done(r.map((x, k) => [document.images[k].id, x.status]).filter(x => x[1] !== 'fulfilled')));"
    )
    assert bad == []


def test_no_console_errors(page):
    page.refresh()
    logs = [e for e in page.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert logs == []


def test_every_toc_link_lands_on_its_section(page):
    links = page.execute_script("return Array.from(document.querySelectorAll('nav#toc a')).map(a => a.getAttribute('href'));")
    assert len(links) >= 10 and all(h.startswith("#") for h in links)
    for href in links:
        page.execute_script("window.scrollTo(0, 0);")
        el = page.find_element("css selector", f"nav#toc a[href='{href}']")
        el.click()
        state = page.execute_script(
            "const t = document.getElementById(arguments[0]);"
            "if (!t) return null;"
            "const r = t.getBoundingClientRect();"
            "return {hash: location.hash, top: r.top, bottom: r.bottom, vh: window.innerHeight, tag: t.tagName,"
            "        maxScroll: document.documentElement.scrollHeight - window.innerHeight, y: window.scrollY};",
            href[1:],
        )
        assert state is not None, f"{href}: no element with that id"
        assert state["hash"] == href and state["tag"] == "SECTION"
        # at the top of the window, or the page scrolled as far as it goes with the section in view
        at_top = abs(state["top"]) <= 2
        at_end = state["y"] >= state["maxScroll"] - 2 and 0 <= state["top"] < state["vh"]
        assert at_top or at_end, (href, state)


def test_missing_browser_skips_locally_but_fails_in_ci(monkeypatch):
    """The guard itself: no chromium -> skip with the reason on a developer's machine, FAIL under CI=true."""
    import sys

    mod = sys.modules[__name__]
    monkeypatch.setattr(mod, "CHROMIUM", ["/nonexistent/chromium"])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(mod, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        _browser()
    monkeypatch.setattr(mod, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        _browser()
