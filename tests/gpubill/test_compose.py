"""docker-compose.yml: the production topology, env-driven, no secrets in the file;
``.env.example`` documents every variable; ``docker compose config`` validates it when a
compose client is installed (skipped otherwise)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from base import queues
from base.settings import Settings
from gpubill import stack_argv

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _cmd(service: dict) -> str:
    return " ".join(service.get("command", []))


def test_one_worker_per_queue_one_beat_flower_and_migrations(services) -> None:
    workers = {m.group(1) for s in services.values() if (m := re.search(r"worker --queues (\S+)", _cmd(s)))}
    assert workers == set(queues.QUEUES)
    for s in services.values():  # the event heartbeat gpubill up uses (docs/performance.md)
        if "worker --queues" in _cmd(s):
            assert f"--heartbeat-interval {stack_argv.EVENT_HEARTBEAT_S} " in _cmd(s)
    assert [n for n, s in services.items() if re.search(r"worker\.app beat\b", _cmd(s))] == ["beat"]
    assert "--read_only" in _cmd(services["flower"])
    assert _cmd(services["migrate"]) == "gpubill db upgrade"
    assert _cmd(services["receiver"]) == "gunicorn -c python:gpubill.gunicorn_conf"
    redis = _cmd(services["redis"])
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    for name, service in services.items():
        if name != "migrate":  # a one-shot: its health is its exit status
            assert service["healthcheck"]["test"], name
        if name not in ("postgres", "redis", "migrate"):
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_no_secret_in_the_file_and_every_variable_documented(services) -> None:
    text = COMPOSE.read_text()
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD|KEY|AUTH", key):
                assert str(value).startswith("${"), f"{name}: {key} must come from the environment"
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert interpolated - documented == set(), "document these in .env.example"
    settings = {f"GPUBILL_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "document these settings in .env.example"


def _compose_client() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_validates(tmp_path) -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client installed")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")  # env_file and interpolation read .env
    result = subprocess.run([*client, "config", "--quiet"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
