"""Publishing (issue 7): the GitHub Pages workflow and `make publish` build the book from the
committed executed notebooks, never recompute an experiment, and deploy what `make book` writes.
(GitHub Actions itself cannot run here; this checks what the workflow would run.)"""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "pages.yml"


def _dry_run(target: str) -> str:
    """What `make <target>` would run, without running it (make -n), as if setup were done."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.installed", target], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_pages_workflow_builds_and_deploys_the_book():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]   # YAML 1.1 reads `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = workflow["jobs"]["build"]["steps"]
    runs = [step["run"] for step in build if "run" in step]
    assert runs == ["make setup", "make book"]
    upload = next(step for step in build if step.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "book/_build/html"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert any(step.get("uses", "").startswith("actions/deploy-pages") for step in deploy["steps"])


def test_book_target_renders_without_executing_notebooks():
    commands = _dry_run("book")
    assert "jupyter-book build" in commands and "--path-output book" in commands and " -W " in commands
    assert "papermill" not in commands
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["execute_notebooks"] == "off"


def test_publish_pushes_the_built_html_to_gh_pages():
    commands = _dry_run("publish")
    assert "ghp-import -n -p -f book/_build/html" in commands
    assert "papermill" not in commands
