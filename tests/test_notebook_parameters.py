"""A bad papermill parameter stops a chapter at once with a one-line error, before any compute."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTER = ROOT / "notebooks" / "02_fe_vs_ft_epochs.ipynb"
BAD_PROFILE = (["-p", "profile", "fast"],
               "ParameterError: The 'profile' parameter must be one of ['ci', 'cpu', 'gpu', 'paper']. Got 'fast' instead.")
# Every chapter with a bad profile; chapter 02 also with bad values of other kinds.
CASES = [(chapter, *BAD_PROFILE) for chapter in CHAPTERS] + [
    (CHAPTER, ["-p", "pretrain_epochs", "-1"], "ParameterError: The 'pretrain.train.epochs' parameter must be an int "
                                               "in the range [1, 10000]. Got -1 instead."),
    (CHAPTER, ["-p", "arch", "alexnet"], "ParameterError: The 'pretrain.model.arch' parameter must be one of"),
]


@pytest.mark.parametrize("chapter, params, message", CASES, ids=[f"{c.stem[:2]} {' '.join(p[1:])}" for c, p, _ in CASES])
def test_bad_parameter_fails_fast_with_one_line(chapter, params, message, tmp_path, isolated_cache):
    proc = subprocess.run([sys.executable, "-m", "papermill", str(chapter), str(tmp_path / "out.ipynb"),
                           "-k", "python3", "--cwd", str(chapter.parent), *params],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr.split("PapermillExecutionError", 1)[1]
    assert not (isolated_cache / "zoo").exists()  # nothing was trained


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_infers_every_parameter(notebook):
    """`papermill --help-notebook` lists each parameter (a '=' inside a comment hides it silently)."""
    import nbformat
    from papermill.inspection import inspect_notebook

    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = [line.split("=", 1)[0].strip() for line in cell.source.splitlines()
                if "=" in line.split("#", 1)[0] and not line.startswith((" ", "#"))]
    assert sorted(inspect_notebook(str(notebook))) == sorted(assigned)
