"""The built wheel is complete (issue 16): it carries every data file (rate cards,
packs, plans, migrations, the RunPod profiles, the Stripe fixtures), and both
stand-ins started from it serve — the RunPod one a job, the Stripe one a Checkout
Session through stripe-python (it answered 500 without its fixtures)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import requests
import stripe

from base.settings import DEV_RUNPOD_API_KEY, DEV_STRIPE_SECRET_KEY
from gpubill.broker import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATA = {"emulators/runpod/profiles.toml", "emulators/stripe/fixtures/checkout_session.json",
        "emulators/stripe/fixtures/event.json", "pricing/packs.toml", "pricing/plans.toml",
        "ledger/migrations/env.py", "ledger/migrations/versions/0001_initial_schema.py"}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (--no-deps) and this venv's site-packages
    after its own for the dependencies: no network, and the editable checkout is not
    on its path (the editable finder's .pth is not processed there)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what git would commit: no build/ or egg-info left over
    # from an earlier build can supply a file the package data leaves out.
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split()
    src = tmp / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(src)], check=True, timeout=300)
    wheel = next((tmp / "dist").glob("gpubill-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert DATA <= names, DATA - names
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "--no-deps", "--no-index", "-q", str(wheel)], check=True, timeout=300)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _serve(venv: Path, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(venv / "bin" / "gpubill"), "emulate", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "GPUBILL_ENV": "test"})


def test_the_wheel_runs_from_outside_the_checkout(wheel_venv, tmp_path) -> None:
    where = subprocess.run([str(wheel_venv / "bin" / "python"), "-c",
                            "import emulators, gpubill; print(emulators.__file__, gpubill.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and str(wheel_venv) in where
    version = subprocess.run([str(wheel_venv / "bin" / "gpubill"), "--version"], cwd=tmp_path,
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == "gpubill, version 0.1.0"


def test_both_stand_ins_serve_from_the_wheel(wheel_venv, tmp_path) -> None:
    rp_port, st_port = free_port(), free_port()
    procs = [_serve(wheel_venv, tmp_path, "runpod", "--port", str(rp_port)),
             _serve(wheel_venv, tmp_path, "stripe", "--port", str(st_port))]
    try:
        def up(url: str, **kw: object) -> bool:
            assert all(p.poll() is None for p in procs), "a stand-in exited"
            try:
                return requests.get(url, timeout=2, **kw).ok
            except requests.ConnectionError:
                return False

        headers = {"Authorization": f"Bearer {DEV_RUNPOD_API_KEY}"}
        wait_for(lambda: up(f"http://127.0.0.1:{rp_port}/v2/probe/health", headers=headers), 30, "runpod")
        wait_for(lambda: up(f"http://127.0.0.1:{st_port}/healthz"), 30, "stripe")
        base = f"http://127.0.0.1:{rp_port}/v2/probe"
        run = requests.post(f"{base}/run", headers=headers, timeout=30,
                            json={"input": {"emulator": {"execution_ms": 50}}})
        assert run.status_code == 200, run.text
        wait_for(lambda: requests.get(f"{base}/status/{run.json()['id']}", headers=headers, timeout=5)
                 .json()["status"] == "COMPLETED", 30, "the job on the wheel's RunPod stand-in")
        client = stripe.StripeClient(DEV_STRIPE_SECRET_KEY, base_addresses={"api": f"http://127.0.0.1:{st_port}"})
        session = client.v1.checkout.sessions.create(params={
            "mode": "payment", "success_url": "http://x/ok", "line_items": [{"quantity": 1, "price_data": {
                "currency": "usd", "unit_amount": 500, "product_data": {"name": "credits"}}}]})
        assert session.id.startswith("cs_") and session.amount_total == 500
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
