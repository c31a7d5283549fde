"""Write requirements.lock: the application's dependencies (not the test extras) as
pip resolves pyproject.toml's ranges today, each pinned with its sha256, using only
pip's own resolver (``pip install --dry-run --ignore-installed --report``, pip ≥ 23).

Usage: python scripts/lock.py  (or ``make lock``). Install from it with
``pip install --require-hashes -r requirements.lock && pip install --no-deps .``.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                        "--quiet", "--report", str(report), str(ROOT)], check=True)
        items = json.loads(report.read_text())["install"]
    pins = sorted((i["metadata"]["name"].lower(), i["metadata"]["version"],
                   i["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256"))
                  for i in items if i["metadata"]["name"].lower() != "gpubill")
    lines = ["# Application dependencies of gpubill, resolved from pyproject.toml's ranges by",
             f"# scripts/lock.py (pip's resolver; Python {platform.python_version()}, {sys.platform} "
             f"{platform.machine()}). Regenerate: make lock.",
             "# Install exactly these: pip install --require-hashes -r requirements.lock && pip install --no-deps ."]
    for name, version, sha in pins:
        lines.append(f"{name}=={version}" + (f" \\\n    --hash=sha256:{sha}" if sha else ""))
    (ROOT / "requirements.lock").write_text("\n".join(lines) + "\n")
    print(f"requirements.lock: {len(pins)} packages")


if __name__ == "__main__":
    main()
