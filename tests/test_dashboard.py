"""optuna-dashboard on a study's storage: its JSON API lists the study, named objectives, the front."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import optuna_dashboard
import pytest
from werkzeug.test import Client

from autospikformer.search.suggest import architecture_params, distributions
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import create_study, open_storage


@pytest.fixture()
def study_url(tmp_path):
    """A registered digits study holding 20 complete trials with real architectures."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    config = StudyConfig.load("digits")
    study, created = create_study(open_storage(url, create=True), config)
    assert created
    rng = random.Random(1)
    seen = set()
    while len(seen) < 20:
        arch = config.space.sample(rng)
        if arch in seen:
            continue
        seen.add(arch)
        params = architecture_params(arch)
        dists = distributions(config.space, arch.depth)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=[rng.uniform(0.5, 0.95), rng.uniform(0.001, 0.01)],
                user_attrs={"autospik:architecture": str(arch)},
            )
        )
    return url, study


def test_wsgi_api_lists_the_study_and_its_front(study_url) -> None:
    url, study = study_url
    client = Client(optuna_dashboard.wsgi(url))
    listed = client.get("/api/studies")
    assert listed.status_code == 200
    studies = listed.get_json()["study_summaries"]
    assert [s["study_name"] for s in studies] == ["digits"]
    assert studies[0]["directions"] == ["maximize", "minimize"]
    detail = client.get(f"/api/studies/{studies[0]['study_id']}")
    assert detail.status_code == 200
    body = detail.get_json()
    assert body["objective_names"] == ["accuracy", "energy_mj"]
    assert len(body["trials"]) == 20
    front = sorted(t["number"] for t in body["best_trials"])
    assert front == sorted(t.number for t in study.best_trials)
    assert front  # a front exists
    attrs = {a["key"]: a["value"] for a in body["user_attrs"]}
    # the study's one-line summary is what the dashboard lists; the records stay out of it
    assert attrs == {"autospik": StudyConfig.load("digits").summary()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_command_serves_on_localhost(study_url, tmp_path) -> None:
    url, study = study_url
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autospikformer.cli", "study", "dashboard", "digits",
         "--storage", url, "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        end = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < end, "dashboard did not start"
                time.sleep(0.3)
        assert [s["study_name"] for s in body["study_summaries"]] == ["digits"]
        study_id = body["study_summaries"][0]["study_id"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=10
        ) as r:
            detail = json.loads(r.read())
        assert sorted(t["number"] for t in detail["best_trials"]) == sorted(
            t.number for t in study.best_trials
        )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out
