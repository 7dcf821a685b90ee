"""environment.yml mirrors requirements.txt, the single source of pins."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = PIN.match(line)
        if m:
            assert _norm(m[1]) not in pins, f"{m[1]} is pinned twice"
            pins[_norm(m[1])] = m[2]
    return pins


def requirements_pins() -> dict[str, str]:
    return _pins((ROOT / "requirements.txt").read_text().splitlines())


def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def environment_pip_lines() -> list[str]:
    lines = []
    for dep in environment()["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            lines += [str(x) for x in dep["pip"]]
    return lines


def test_requirements_pin_every_line():
    """Every requirement is an exact pin (no ranges, no bare names)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert PIN.match(line), f"requirements.txt: {line!r} is not pinned with =="


def test_environment_mirrors_requirements():
    req, env = requirements_pins(), _pins(environment_pip_lines())
    assert req, "no pins found in requirements.txt"
    only_req = sorted(set(req) - set(env))
    only_env = sorted(set(env) - set(req))
    differ = {k: (req[k], env[k]) for k in set(req) & set(env) if req[k] != env[k]}
    assert not only_req, f"pinned in requirements.txt but not in environment.yml: {only_req}"
    assert not only_env, f"pinned in environment.yml but not in requirements.txt: {only_env}"
    assert not differ, f"pins differ (requirements.txt, environment.yml): {differ}"


def test_environment_pip_section_has_no_loose_requirements():
    """Besides the pins, the pip section may only install the project itself."""
    for line in environment_pip_lines():
        if not PIN.match(line):
            assert line.strip() == "-e .", f"environment.yml pip entry {line!r} is neither a pin nor '-e .'"


def test_environment_python_matches_project():
    conda = [d for d in environment()["dependencies"] if isinstance(d, str)]
    pythons = [d for d in conda if re.match(r"python\b", d)]
    assert pythons == ["python=3.11"], pythons
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'requires-python\s*=\s*">=3\.11"', pyproject)


def test_pyproject_dependencies_are_unpinned_and_pinned_in_requirements():
    """Pins live only in requirements.txt; pyproject lists bare names, each of them pinned there."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = requirements_pins()
    for dep in deps:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", dep), f"pyproject pins {dep!r}: pin it in requirements.txt"
        assert _norm(dep) in req, f"pyproject dependency {dep!r} is not pinned in requirements.txt"
