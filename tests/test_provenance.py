"""Provenance: the commit a result names is dirty only when a run's inputs changed."""
import subprocess

from transferlab.provenance import git_commit


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_changes_in_book_do_not_make_the_commit_dirty_but_changes_elsewhere_do(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "01_chapter.ipynb").write_text("{}")
    (tmp_path / "lib.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    clean = git_commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("+dirty"), clean

    (tmp_path / "book" / "01_chapter.ipynb").write_text('{"executed": true}')   # a re-rendered chapter
    assert git_commit(tmp_path) == clean

    (tmp_path / "lib.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"
