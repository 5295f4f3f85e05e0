"""The rendered demo brief, opened in headless Chromium as a reader would open it.

Chromium is Debian's (``tests/services/chromium.sh`` installs it and sets ``TRIALS_CHROMIUM``;
CI runs that script). Playwright drives it through the driver inside its wheel, with
``executable_path`` pointing at that binary: no browser is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).parent / "artifacts"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
# Root in a container: no sandbox, no GPU, no small /dev/shm; and no calls home while testing.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium_path() -> Path:
    """``TRIALS_CHROMIUM`` when set (it must exist then), else Debian's binary, else skip."""
    configured = os.environ.get("TRIALS_CHROMIUM")
    if configured:
        path = Path(configured)
        assert path.is_file(), f"TRIALS_CHROMIUM={configured} does not exist"
        return path
    if DEBIAN_CHROMIUM.is_file():
        return DEBIAN_CHROMIUM
    pytest.skip("no headless Chromium: TRIALS_CHROMIUM is unset and /usr/bin/chromium is missing "
                "(run `eval \"$(bash tests/services/chromium.sh)\"` to install Debian's chromium)")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR", "PNG without a leading IHDR chunk"
    return struct.unpack(">II", data[16:24])


def test_brief_renders_in_headless_chromium(demo_run):
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    run_dir = demo_run.run.run_dir
    brief = run_dir / "brief.html"
    label = json.loads((run_dir / "decision.json").read_text(encoding="utf-8"))["label"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "brief.png"
    shot.unlink(missing_ok=True)

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                     headless=True, timeout=20_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(
                f"request failed: {r.url[:80]} ({r.failure})"))
            page.goto(brief.as_uri(), wait_until="load")

            images = page.eval_on_selector_all("img", """els => els.map(e => ({
                alt: e.alt, complete: e.complete, width: e.naturalWidth}))""")
            banner = page.locator(".decision-banner")
            banner_count = banner.count()
            box = banner.first.bounding_box() if banner_count else None
            visible = banner_count > 0 and banner.first.is_visible()
            banner_text = banner.first.inner_text() if banner_count else ""
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert errors == [], "the brief logged errors in the browser"
    assert images, "the brief shows no figure"
    broken = [i for i, img in enumerate(images) if not img["complete"] or img["width"] <= 0]
    assert broken == [], f"figures that did not load (by position): {broken}"
    assert all(img["alt"].strip() for img in images), "a figure has no alt text"
    assert banner_count == 1, f"expected one decision banner, found {banner_count}"
    assert visible and box and box["width"] > 0 and box["height"] > 0, f"banner box: {box}"
    # The banner reads "Decision: GO" (or "Decision: EXPLORATORY — GO"); "GO" alone would also
    # match "NO-GO".
    said = re.search(rf"Decision: (?:EXPLORATORY — )?{re.escape(label)}(?![\w-])", banner_text)
    assert said, f"decision label {label!r} not in banner: {banner_text!r}"

    data = shot.read_bytes()
    width, height = png_size(data)
    assert width > 0 and height > 0
    assert height >= 900, f"full-page screenshot is only {height}px tall"
