"""Cancelling a search keeps the best so far, and nothing is lost: a re-run with the same inputs, or a
resumed run (``resume_from=`` / ``--resume``), ends exactly where an uninterrupted run ends.

Two ways to cancel are modelled: an ``on_step`` that raises (what ComfyUI's ProgressBar does when the
user presses Cancel: ``InterruptProcessingException``) and Ctrl-C (SIGINT) sent to
``python -m noise_search demo`` while it runs. The CLI tests run the real demo when the toy-world
weights are committed, and always run it once over a stub world (a closed-form denoiser with the same
interface as ``toyworld.world.ToyWorld``) so the CLI contract is tested without weights.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from closed_form import CountingModel
from noise_search.samplers.noise_space import EDM
from noise_search.samplers.ode import heun_step, sample_heun, sampler_nfe, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.paths import path_search
from noise_search.search.random_search import random_search
from noise_search.search.result import SearchResult
from noise_search.search.zero_order import zero_order_search

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 2, 4, 4)
SIGMAS = karras_sigmas(6, 0.002, 80.0)
NFE = sampler_nfe("heun", SIGMAS)
TARGET = torch.linspace(-1, 1, 32).view(1, 2, 4, 4)


class InterruptProcessingException(Exception):
    """Stands in for comfy.model_management.InterruptProcessingException (raised from a progress update)."""


def score(batch):
    return -((batch.samples - TARGET) ** 2).flatten(1).sum(1)


def run(algo, model, **kw):
    gen = lambda c: sample_heun(model, c.noise * SIGMAS[0], SIGMAS)
    if algo == "random":
        return random_search(gen, score, SHAPE, seed=11, count=13, nfe_per_candidate=NFE, chunk_size=3, top_k=4, **kw)
    if algo == "zero_order":
        return zero_order_search(gen, score, SHAPE, seed=11, neighbours_per_iter=3, iterations=4, lam=0.9,
                                 nfe_per_candidate=NFE, chunk_size=2, top_k=4, **kw)
    den = lambda x, a, b: heun_step(model, x, a, b)[0]
    return path_search(den, score, SHAPE, SIGMAS, seed=11, paths=2, width=3, start_step=2, forward_steps=1, backward_steps=2,
                       step_nfe=lambda a, b: step_nfe("heun", b), chunk_size=2, top_k=4, **kw, space=EDM)


def cancel_after(n):
    def on_step(done, total):
        if done >= n:
            raise InterruptProcessingException(f"cancelled at {done}/{total}")
    return on_step


def comparable(result):
    d = result.to_dict()
    d.pop("resumed", None)
    return d


@pytest.mark.parametrize("algo,stop", [("random", 5), ("zero_order", 5), ("paths", 9)])
def test_cancel_from_on_step_keeps_best_so_far_and_rerun_is_identical(algo, stop):
    full = run(algo, CountingModel())
    seen = []
    with pytest.raises(InterruptProcessingException, match="cancelled at"):
        run(algo, CountingModel(), on_step=cancel_after(stop), on_interrupt=seen.append)
    assert len(seen) == 1
    partial = seen[0]
    assert not partial.completed and 0 < len(partial.history) < len(full.history)
    # the partial history is exactly the uninterrupted run's first candidates: nothing scored is lost
    assert [c.to_dict() for c in partial.history] == [c.to_dict() for c in full.history[: len(partial.history)]]
    kept = [c for c in partial.history if c.round == max(c.round for c in full.history)] if algo == "paths" else partial.history
    if kept:  # the best so far is the best scored (paths: of the final round reached)
        assert partial.winner.score == max(c.score for c in kept)
        assert partial.top_k_samples["samples"].shape[0] == len(partial.top_k)
    else:
        with pytest.raises(ValueError, match="no candidate was evaluated"):
            partial.winner
    again = run(algo, CountingModel())  # a re-run with the same inputs
    assert comparable(again) == comparable(full) and torch.equal(again.top_k_samples["samples"], full.top_k_samples["samples"])


@pytest.mark.parametrize("algo", ["random", "zero_order"])
@pytest.mark.parametrize("stop", [1, 4, 7])
def test_resume_from_partial_equals_uninterrupted_and_skips_scored_candidates(algo, stop):
    full_model = CountingModel()
    full = run(algo, full_model)
    seen = []
    with pytest.raises(InterruptProcessingException):
        run(algo, CountingModel(), on_step=cancel_after(stop), on_interrupt=seen.append)
    partial = seen[0]
    # through JSON, as the CLI stores it (samples travel separately)
    restored = SearchResult.from_dict(json.loads(partial.to_json()), partial.top_k_samples)
    model = CountingModel()
    resumed = run(algo, model, resume_from=restored)
    assert comparable(resumed) == comparable(full)
    assert resumed.resumed == len(partial.history) and resumed.to_dict()["resumed"] == len(partial.history)
    assert torch.equal(resumed.top_k_samples["samples"], full.top_k_samples["samples"])
    # only the candidates not yet scored were generated
    assert model.calls == full_model.calls - len(partial.history) * NFE


def test_resume_refuses_a_partial_from_other_inputs():
    seen = []
    with pytest.raises(InterruptProcessingException):
        run("random", CountingModel(), on_step=cancel_after(3), on_interrupt=seen.append)
    gen = lambda c: sample_heun(CountingModel(), c.noise * SIGMAS[0], SIGMAS)
    with pytest.raises(ValueError, match=r"other parameters: seed=11 there, 12 here"):
        random_search(gen, score, SHAPE, seed=12, count=13, nfe_per_candidate=NFE, chunk_size=3, top_k=4, resume_from=seen[0])
    with pytest.raises(ValueError, match=r"chunk_size=3 there, 4 here"):
        random_search(gen, score, SHAPE, seed=11, count=13, nfe_per_candidate=NFE, chunk_size=4, top_k=4, resume_from=seen[0])
    with pytest.raises(ValueError, match=r"is a 'random' search; it cannot resume a 'zero_order' search"):
        run("zero_order", CountingModel(), resume_from=seen[0])
    no_samples = SearchResult.from_dict(json.loads(seen[0].to_json()))
    with pytest.raises(ValueError, match=r"no top-K samples"):
        run("random", CountingModel(), resume_from=no_samples)


def test_cancel_before_any_candidate_hands_over_nothing():
    """A cancel inside the first chunk's sampling (ComfyUI checks for it in every sampler step)."""
    seen = []

    def generate(candidates):
        raise InterruptProcessingException("cancelled while sampling the first chunk")

    with pytest.raises(InterruptProcessingException, match="first chunk"):
        random_search(generate, score, SHAPE, count=4, nfe_per_candidate=NFE, on_interrupt=seen.append)
    assert seen == []  # nothing was scored, so there is nothing to keep (the cancel still propagates)


def test_a_failing_save_does_not_hide_the_cancel():
    def broken_save(partial):
        raise OSError("disk full")

    with pytest.raises(KeyboardInterrupt) as info:
        def on_step(done, total):
            if done >= 3:
                raise KeyboardInterrupt
        run("random", CountingModel(), on_step=on_step, on_interrupt=broken_save)
    assert info.value.__notes__ == ["on_interrupt could not save the partial result: OSError: disk full"]


# ----------------------------------------------------------------------------------------------------
# Ctrl-C in the CLI

STUB = r'''
import importlib.util, os, sys, time, types
ROOT = sys.argv[1]
if "noise_search" not in sys.modules:
    spec = importlib.util.spec_from_file_location("noise_search", os.path.join(ROOT, "__init__.py"), submodule_search_locations=[ROOT])
    m = importlib.util.module_from_spec(spec); sys.modules["noise_search"] = m; spec.loader.exec_module(m)
import torch
import noise_search.toyworld
from noise_search.samplers.ode import STEPS, sampler_nfe, step_nfe
from noise_search.samplers.schedules import karras_sigmas
from noise_search.search.evaluate import LATENT, Batch


class StubWorld:
    """ToyWorld's interface over the closed-form denoiser of N(mu, I) data; STUB_DELAY s per candidate."""

    def __init__(self, digit, steps=10, method="heun", generator="teacher", **_):
        self.digit, self.method, self.shape, self.cfg_multiplier = int(digit), method, (1, 1, 8, 8), 1
        self.sigmas = karras_sigmas(int(steps), 0.002, 80.0)
        self.nfe_per_candidate = sampler_nfe(method, self.sigmas)
        g = torch.Generator().manual_seed(1000 + self.digit)
        self.mu = torch.rand(self.shape, generator=g) * 2 - 1
        self.target = torch.rand((1, 8, 8, 1), generator=g)
        self.delay = float(os.environ.get("STUB_DELAY", "0"))
        self.verifier = types.SimpleNamespace(describe=lambda: {"name": "stub"})

    def model(self, x, sigma):
        s2 = sigma.view(-1, 1, 1, 1) ** 2
        return (x + s2 * self.mu) / (1 + s2)

    def denoise(self, x, a, b):
        return STEPS[self.method](self.model, x, float(a), float(b))[0]

    def step_nfe(self, a, b):
        return step_nfe(self.method, b)

    def generate(self, candidates):
        time.sleep(self.delay * len(candidates))
        sig = self.sigmas.tolist()
        x = candidates.noise * sig[0]
        for i in range(len(sig) - 1):
            x = STEPS[self.method](self.model, x, sig[i], sig[i + 1])[0]
        return self.decode(x)

    def decode(self, x):
        return Batch(((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous(), {LATENT: x})

    def score(self, batch):
        return -((batch.samples - self.target) ** 2).flatten(1).sum(1)


fake = types.ModuleType("noise_search.toyworld.world")
fake.ToyWorld = StubWorld
sys.modules["noise_search.toyworld.world"] = fake
noise_search.toyworld.world = fake
from noise_search.cli import main
sys.exit(main(sys.argv[2:]))
'''

WEIGHTS = [ROOT / "toyworld" / "weights" / f for f in ("teacher.safetensors", "classifier.safetensors")]
PROGRESS = re.compile(r"(\d+)/(\d+) candidates")


def _env(**extra):
    return dict(os.environ, PYTHONUNBUFFERED="1", **extra)


def _demo_cmd(stub, args):
    if stub:
        return [sys.executable, "-c", STUB, str(ROOT), "demo", *args]
    return [sys.executable, "-m", "noise_search", "demo", *args]


def _interrupt_after_first_candidates(cmd, env, cwd, timeout=150):
    """Start the demo, wait until its progress shows >= 2 scored candidates, send SIGINT; (rc, stdout, stderr)."""
    # A shell starts background jobs (``pytest &``, CI runners) with SIGINT ignored, and a child inherits that:
    # Python then installs no KeyboardInterrupt handler. A user's terminal delivers Ctrl-C with the default one.
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.set_blocking(proc.stderr.fileno(), False)
    err, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = proc.stderr.read()
            if chunk:
                err += chunk
            done = [int(m.group(1)) for m in PROGRESS.finditer(err.decode(errors="replace"))]
            if done and max(done) >= 2:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the demo ended before it could be interrupted (rc {proc.returncode}):\n{err.decode()[-2000:]}"
        assert done and max(done) >= 2, f"no progress within {timeout} s:\n{err.decode()[-2000:]}"
        proc.send_signal(signal.SIGINT)
        os.set_blocking(proc.stderr.fileno(), True)
        out, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), (err + rest).decode(errors="replace")


def _algorithms(summary):
    out = {}
    for name, d in summary["algorithms"].items():
        d = dict(d)
        d.pop("seconds"), d.pop("resumed", None)
        out[name] = d
    return out


def _check_ctrl_c(tmp_path, stub, args, env):
    a = tmp_path / "a"
    rc, out, err = _interrupt_after_first_candidates(_demo_cmd(stub, [*args, "--out", str(a)]), env, tmp_path)
    assert rc == 130, f"rc {rc}\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert "cancelled (Ctrl-C)" in err and "interrupted: best so far of random" in out
    # the best so far: a JSON with every scored candidate, the grid PNG, the top-K samples and a summary
    partial = json.loads((a / "random_interrupted.json").read_text())
    assert partial["completed"] is False and len(partial["history"]) >= 2
    assert partial["winner"]["score"] == max(h["score"] for h in partial["history"])
    from PIL import Image
    with Image.open(a / "random_interrupted_grid.png") as im:
        assert im.format == "PNG" and im.size[0] > 0
    summary = json.loads((a / "summary.json").read_text())
    assert summary["interrupted"]["algorithm"] == "random"
    assert summary["interrupted"]["candidates"] == len(partial["history"])
    assert summary["interrupted"]["best_score"] == partial["winner"]["score"]

    # --resume in a new process finishes the run without re-scoring the saved candidates ...
    resumed = subprocess.run(_demo_cmd(stub, [*args, "--out", str(a), "--resume", "--quiet"]), cwd=tmp_path,
                             env=dict(env, STUB_DELAY="0"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"continues after the {len(partial['history'])} candidates" in resumed.stdout
    ra = json.loads((a / "summary.json").read_text())
    assert "interrupted" not in ra and ra["algorithms"]["random"]["resumed"] == len(partial["history"])
    assert not (a / "random_interrupted.json").exists()  # consumed by --resume
    return partial, ra


def _uninterrupted_in_process(tmp_path, args):
    from noise_search.cli import main
    c = tmp_path / "c"
    assert main([*args, "--out", str(c), "--quiet"]) == 0
    return json.loads((c / "summary.json").read_text()), (c / "random_grid.png").read_bytes()


def _check_same_as_uninterrupted(tmp_path, partial, resumed, fresh, fresh_grid):
    # ... and ends bit for bit where an uninterrupted run (another process) ends: JSON floats are exact
    assert _algorithms(resumed) == _algorithms(fresh)
    assert partial["history"] == fresh["algorithms"]["random"]["history"][: len(partial["history"])]
    assert (tmp_path / "a" / "random_grid.png").read_bytes() == fresh_grid


@pytest.mark.skipif(all(p.exists() for p in WEIGHTS), reason="the toy-world weights are committed: the real demo is tested instead")
def test_ctrl_c_in_the_cli_on_a_stub_world(tmp_path, monkeypatch):
    args = ["--digit", "3", "--algorithms", "random", "--steps", "4", "--budget", str(7 * 200), "--chunk-size", "1"]
    partial, resumed = _check_ctrl_c(tmp_path, True, args, _env(STUB_DELAY="0.03"))
    fresh = subprocess.run(_demo_cmd(True, [*args, "--out", str(tmp_path / "c"), "--quiet"]), cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    _check_same_as_uninterrupted(tmp_path, partial, resumed, json.loads((tmp_path / "c" / "summary.json").read_text()),
                                 (tmp_path / "c" / "random_grid.png").read_bytes())


@pytest.mark.skipif(not all(p.exists() for p in WEIGHTS), reason="toy-world weights (toyworld/weights/*.safetensors) not committed yet")
def test_ctrl_c_in_the_cli_on_the_toy_world(tmp_path):
    """``python -m noise_search demo``, SIGINT after the first scored candidates: exit 130, the best so far
    on disk; ``--resume`` then gives exactly the uninterrupted result."""
    args = ["--digit", "3", "--algorithms", "random", "--steps", "4", "--budget", str(7 * 60), "--chunk-size", "1", "--top-k", "8"]
    partial, resumed = _check_ctrl_c(tmp_path, False, args, _env())
    fresh, grid = _uninterrupted_in_process(tmp_path, ["demo", *args])
    _check_same_as_uninterrupted(tmp_path, partial, resumed, fresh, grid)
