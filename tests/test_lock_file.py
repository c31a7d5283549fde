"""requirements.lock (issue 16, packaging): every application dependency of
pyproject.toml is pinned there, inside its range, with a sha256 — so ``pip install
--require-hashes -r requirements.lock`` installs what the ranges allow, and a range
changed without ``make lock`` fails here, not at someone's install."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)\s*\\\s*\n\s+--hash=sha256:([0-9a-f]{64})\s*$", re.MULTILINE)


def test_every_dependency_is_pinned_in_range_with_a_hash() -> None:
    lock_text = (ROOT / "requirements.lock").read_text()
    pins = {canonicalize_name(name): version for name, version, _ in PIN.findall(lock_text)}
    entries = [ln for ln in lock_text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(pins) == len(entries), "every entry is name==version with its sha256"
    deps = [Requirement(d) for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    assert len(deps) >= 10
    for dep in deps:
        name = canonicalize_name(dep.name)
        assert name in pins, f"{dep.name} is not in requirements.lock (make lock)"
        assert dep.specifier.contains(pins[name], prereleases=True), \
            f"{dep.name}=={pins[name]} is outside {dep.specifier}"
    assert canonicalize_name("gpubill") not in pins
