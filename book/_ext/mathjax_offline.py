"""Serve MathJax 3 from the built book instead of a CDN, so formulas render offline.

The files come from the pinned `sphinx-mathjax-offline` package (MathJax 3.2.2); only what
`tex-chtml.js` loads is copied (~6 MB, not the package's 24 MB): the component, its CHTML
fonts, TeX extensions, and the menu and accessibility (speech) parts a reader can switch on.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util.fileutil import copy_asset

PACKAGE = "sphinx-mathjax-offline"
NEEDED = ("tex-chtml.js", "output/chtml", "input/tex", "ui", "a11y", "sre")


def _mathjax_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{PACKAGE} is not installed; run `make setup` (it is pinned in requirements.txt)")
    return Path(spec.origin).parent / "static" / "mathjax"


def _copy(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None or app.builder.format != "html":
        return
    source, target = _mathjax_dir(), Path(app.outdir) / "_static" / "mathjax"
    for part in NEEDED:
        if (source / part).is_dir():
            copy_asset(str(source / part), str(target / part))
        else:
            target.mkdir(parents=True, exist_ok=True)
            copy_asset(str(source / part), str(target))


def setup(app: Sphinx) -> dict:
    _mathjax_dir()   # fail at the start of a build, not after it
    app.config.mathjax_path = "mathjax/tex-chtml.js"
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
