"""The book as readers see it (issue 7): every chapter of the built book, rendered by headless
Chromium, shows its figures, its verdict table and its typeset formulas (MathJax is served
from the book itself: Chromium here has no network), and every internal link resolves. A
screenshot of each chapter is kept as a test artifact.

Reads the book that `make book` built (book/_build/html, or $TRANSFERLAB_BOOK_HTML); skipped
when there is none or when Chromium is absent (Debian: `apt-get install chromium`).
Screenshots go to $TRANSFERLAB_ARTIFACTS (default .cache/test-artifacts/browser).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("TRANSFERLAB_BOOK_HTML", ROOT / "book" / "_build" / "html"))
ARTIFACTS = Path(os.environ.get("TRANSFERLAB_ARTIFACTS", ROOT / ".cache" / "test-artifacts" / "browser"))
BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHAPTERS = sorted((HTML / "book").glob("[0-9][0-9]_*.html"))
# In a container Chromium runs as root: no sandbox; no GPU; a tall window for whole-chapter shots.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,4000"]

pytestmark = [
    pytest.mark.slow,  # one browser start per page and screenshot
    pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (apt-get install chromium)"),
    pytest.mark.skipif(not CHAPTERS, reason=f"no built book in {HTML} (run `make book`)"),
]


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, *FLAGS, *args], capture_output=True, text=True, timeout=120)


def _rendered(page: Path) -> BeautifulSoup:
    """The page's DOM after Chromium ran its scripts."""
    proc = _chromium("--dump-dom", page.as_uri())
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return BeautifulSoup(proc.stdout, "html.parser")


def _local_target(page: Path, href: str) -> Path | None:
    """The file a relative link or image source points to (None for external, data: or in-page)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return (page.parent / unquote(parts.path)).resolve()


@pytest.mark.parametrize("page", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_shows_figures_verdicts_and_resolving_links(page):
    dom = _rendered(page)
    images = [img.get("src", "") for img in dom.find_all("img") if "logo" not in " ".join(img.get("class", []))]
    assert images, f"{page.name}: no figure"
    missing = [src for src in images if (t := _local_target(page, src)) is not None and not t.is_file()]
    assert not missing, f"{page.name}: figures that do not resolve: {missing}"
    tables = [t for t in dom.find_all("table") if "verdict" in [th.get_text(strip=True).lower() for th in t.find_all("th")]]
    assert tables, f"{page.name}: no table with a 'verdict' column"
    assert any(cell in tables[-1].get_text() for cell in ("reproduced", "inconclusive")), page.name
    external = [s["src"] for s in dom.find_all("script", src=True) if urlsplit(s["src"]).scheme in ("http", "https")]
    assert not external, f"{page.name}: scripts from the network (the book must read offline): {external}"
    if 'class="math' in page.read_text():
        assert dom.find_all("mjx-container"), f"{page.name}: formulas left as raw TeX (MathJax did not load)"
    prose = BeautifulSoup(str(dom), "html.parser")
    for tag in prose(["script", "style", "pre", "code", "mjx-container"]):
        tag.decompose()
    raw_tex = re.findall(r"\$[^$\s][^$]*?\$", prose.get_text())
    assert not raw_tex, f"{page.name}: TeX shown as text (e.g. in a Markdown output): {raw_tex[:3]}"

    ids = {tag["id"] for tag in dom.find_all(id=True)}
    broken = []
    for link in dom.find_all("a", href=True):
        parts = urlsplit(link["href"])
        if parts.scheme or parts.netloc:  # external
            continue
        target = _local_target(page, link["href"])
        if target is not None and not target.exists():
            broken.append(link["href"])
        elif parts.fragment and parts.fragment not in (_ids(target) if target is not None else ids):
            broken.append(link["href"])
    assert not broken, f"{page.name}: internal links that do not resolve: {broken}"


def _ids(page: Path) -> set[str]:
    """Element ids of a linked page (statically parsed; none for other files)."""
    if page.suffix != ".html":
        return set()
    return {tag["id"] for tag in BeautifulSoup(page.read_text(), "html.parser").find_all(id=True)}


@pytest.mark.parametrize("page", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_screenshot(page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{page.stem}.png"
    shot.unlink(missing_ok=True)
    proc = _chromium(f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, "a blank page?"


def test_performance_page_shows_the_speedup_figure_and_the_device_tables():
    page = HTML / "book" / "performance.html"
    dom = _rendered(page)
    figures = [img["src"] for img in dom.find_all("img") if "performance_speedups" in img.get("src", "")]
    assert figures and all(_local_target(page, src).is_file() for src in figures), figures
    headers = [[th.get_text(strip=True) for th in t.find_all("th")] for t in dom.find_all("table")]
    assert sum("speed-up, medians (target)" in h for h in headers) >= 2, "a benchmark table per device"
