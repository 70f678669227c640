"""A user's mistakes on the command line: one line ``noise-search: error: ...`` that names the input and what is
valid, exit status 2 for a usage error and 1 for a runtime error, never a traceback (cli/__init__.py's EXIT_STATUS).

Most cases run ``cli.main`` in-process (it raises SystemExit with the exit status, as argparse does); a few run
``python -m noise_search`` in a subprocess to see what a user sees, and what ``--help`` imports.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from noise_search.cli import EXIT_STATUS, main

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = ROOT / "toyworld" / "weights" / "classifier.safetensors"
TEACHER = ROOT / "toyworld" / "weights" / "teacher.safetensors"


def run_cli(args, capsys):
    """(exit status, stdout, stderr) of ``main(args)``."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err, code, expected_code, must):
    lines = err.strip().splitlines()
    assert code == expected_code, f"exit status {code}, expected {expected_code}; stderr:\n{err}"
    assert len(lines) == 1 and lines[0].startswith("noise-search: error: "), f"not one error line:\n{err}"
    missing = [m for m in must if m not in lines[0]]
    assert not missing, f"{lines[0]!r} lacks {missing}"


@pytest.fixture
def digit_png(tmp_path):
    """An 8x8 grey image of a digit 3 drawn by hand (what the toy classifier reads)."""
    rows = ["00111100", "00000110", "00000110", "00111100", "00000110", "00000110", "00111100", "00000000"]
    img = Image.new("L", (8, 8))
    img.putdata([255 * int(c) for r in rows for c in r])
    path = tmp_path / "three.png"
    img.save(path)
    return path


@pytest.fixture
def unwritable_dir(tmp_path):
    """A folder the demo cannot write into: read-only for a normal user; as root (who may write anywhere) a
    folder under /proc, which nobody can create."""
    d = tmp_path / "read-only"
    d.mkdir()
    d.chmod(0o555)
    try:
        if not os.access(d, os.W_OK):
            yield d
        elif Path("/proc/self").is_dir():
            yield Path("/proc/self/noise-search-out")
        else:
            pytest.skip("no folder here is unwritable for this user")
    finally:
        d.chmod(0o755)


def score_args(*extra, weights=CLASSIFIER):
    return ["score", "--verifier", "classifier", "--weights", weights, *extra]


# ---- usage errors: exit status 2 ----------------------------------------------------------------------

USAGE = {
    "demo budget below one candidate": (lambda t, png: ["demo", "--algorithms", "random", "--budget", "5", "--out", t / "o"],
                                        ["--budget 5", "one candidate (19 NFE", "give --budget >= 19"]),
    "demo budget below a paths round": (lambda t, png: ["demo", "--budget", "40", "--out", t / "o"],
                                        ["--budget 40", "search over paths", "give --budget >= 90"]),
    "demo out under a file": (lambda t, png: ["demo", "--out", png / "sub"],
                              ["--out", "three.png is a file, not a folder"]),
    "demo algorithm twice": (lambda t, png: ["demo", "--algorithms", "random,random", "--out", t / "o"],
                             ["--algorithms names random more than once", "random,zero_order,paths"]),
    "demo paths with the student": (lambda t, png: ["demo", "--generator", "student", "--algorithms", "random,paths", "--out", t / "o"],
                                    ["--algorithms paths needs an ODE sampler", "--generator teacher"]),
    "demo not an int": (lambda t, png: ["demo", "--digit", "three"], ["argument --digit", "invalid int value: 'three'"]),
    "score not an image": (lambda t, png: score_args("--class-id", "3", Path(__file__)),
                           ["IMAGE", "test_cli_errors.py is not an image", "PNG"]),
    "score missing image": (lambda t, png: score_args("--class-id", "3", t / "nope.png"), ["IMAGE", "nope.png does not exist"]),
    "score device banana": (lambda t, png: score_args("--class-id", "3", "--device", "banana", png),
                            ["--device must be one of cpu", "got 'banana'"]),
    "score empty prompt": (lambda t, png: ["score", "--verifier", "clip_score", "--weights", t, "--prompt", "", png],
                           ["--prompt must be a non-empty text", "got ''"]),
    "score without a verifier": (lambda t, png: ["score", png], ["--verifier NAME is required", "clip_score", "classifier"]),
    "score unknown verifier": (lambda t, png: ["score", "--verifier", "clipscor3", "--weights", t, png],
                               ["unknown verifier 'clipscor3'", "valid names:"]),
    "score missing weights": (lambda t, png: score_args("--class-id", "3", png, weights=t / "nowhere.safetensors"),
                              ["nowhere.safetensors"]),
    "score class out of range": (lambda t, png: score_args("--class-id", "12", png), ["--class-id 12", "(0..9)"]),
    "score class missing": (lambda t, png: score_args(png), ["needs --class-id N (0..9)"]),
    "bench bad parts": (lambda t, png: ["bench", "fidelity", "--parts", "f9", "--out", t / "f"], ["--parts", "f1,f2,f3,f4", "'f9'"]),
    "no subcommand": (lambda t, png: [], ["required", "demo,score,bench"]),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_errors_are_one_line_and_exit_2(case, tmp_path, digit_png, capsys):
    make_args, must = USAGE[case]
    code, _, err = run_cli(make_args(tmp_path, digit_png), capsys)
    assert_one_line_error(err, code, 2, must)


def test_demo_out_that_cannot_be_written(unwritable_dir, capsys):
    code, _, err = run_cli(["demo", "--out", unwritable_dir], capsys)
    assert_one_line_error(err, code, 2, ["--out", "cannot be the output folder", "give a writable folder"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_score_on_cuda_with_a_cpu_build(digit_png, capsys):
    code, _, err = run_cli(score_args("--class-id", "3", "--device", "cuda", digit_png), capsys)
    assert_one_line_error(err, code, 2, ["--device must be one of cpu", "got 'cuda'"])


def test_a_usage_error_in_process_is_a_system_exit_with_the_message(tmp_path, capsys):
    """Callers (and tests) read the message from the SystemExit, as from argparse."""
    with pytest.raises(SystemExit, match="--digit must be in") as info:
        main(["demo", "--digit", "12", "--out", str(tmp_path)])
    assert info.value.code == 2


# ---- runtime errors: exit status 1 --------------------------------------------------------------------

def test_bench_fidelity_without_scikit_learn_says_so_before_loading_anything(tmp_path, monkeypatch, capsys):
    from noise_search.toyworld import fidelity

    for name in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)  # "import sklearn" now raises ImportError
    monkeypatch.setattr(fidelity, "load_models", lambda *a, **k: pytest.fail("models loaded before scikit-learn was checked"))
    code, _, err = run_cli(["bench", "fidelity", "--quick", "--out", tmp_path / "f"], capsys)
    assert_one_line_error(err, code, 1, ["bench fidelity needs scikit-learn", "pip install scikit-learn"])


def test_weights_of_another_kind_are_a_runtime_error(digit_png, capsys):
    code, _, err = run_cli(score_args("--class-id", "3", digit_png, weights=TEACHER), capsys)
    assert_one_line_error(err, code, 1, ["teacher.safetensors holds 'teacher' weights, not 'classifier'"])


def test_an_unexpected_exception_is_reported_as_a_bug_with_the_debug_hint(tmp_path, monkeypatch, capsys):
    from noise_search.cli import demo

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(demo, "_check_args", broken)
    code, _, err = run_cli(["demo", "--out", tmp_path], capsys)
    assert_one_line_error(err, code, 1, ["internal error: KeyError", "boom", "NOISE_SEARCH_DEBUG=1"])
    monkeypatch.setenv("NOISE_SEARCH_DEBUG", "1")
    with pytest.raises(KeyError, match="boom"):
        main(["demo", "--out", str(tmp_path)])


# ---- what works now -----------------------------------------------------------------------------------

def test_score_loads_the_toy_classifier_file(digit_png, capsys):
    """toyworld/weights/classifier.safetensors was called corrupt: the classifier loader took every file for
    TorchScript. It is the toy world's own format and scores as the demo's verifier does."""
    from noise_search.toyworld.world import classifier_verifier
    from noise_search.cli.score import load_image

    code, out, err = run_cli(score_args("--class-id", "3", digit_png), capsys)
    assert code == 0, err
    row = json.loads(out.strip())
    assert row["path"] == str(digit_png)
    assert row["score"] == pytest.approx(classifier_verifier().score(load_image(digit_png), 3).item(), abs=1e-5)
    code, out_7, _ = run_cli(score_args("--class-id", "7", digit_png), capsys)
    assert json.loads(out_7)["score"] < row["score"]  # a drawn 3 scores higher as a 3 than as a 7


def test_score_list_needs_no_verifier(capsys):
    code, out, err = run_cli(["score", "--list"], capsys)
    assert code == 0, err
    assert {"clip_score", "classifier", "image_reward"} <= set(out.split())


def test_every_help_documents_the_exit_statuses(capsys):
    for args in (["--help"], ["demo", "--help"], ["score", "--help"], ["bench", "fidelity", "--help"]):
        code, out, _ = run_cli(args, capsys)
        assert code == 0 and EXIT_STATUS in out, args


# ---- as a user sees it: subprocesses ---------------------------------------------------------------------

IMPORT_PACK = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("noise_search", r"{ROOT / '__init__.py'}", submodule_search_locations=[r"{ROOT}"])
pack = importlib.util.module_from_spec(spec); sys.modules["noise_search"] = pack; spec.loader.exec_module(pack)
from noise_search.cli import main
"""


def run_python(code, *args, timeout=120):
    return subprocess.run([sys.executable, "-c", IMPORT_PACK + code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "NOISE_SEARCH_DEBUG"})


@pytest.mark.parametrize("args", [
    ["demo", "--budget", "5", "--algorithms", "random", "--out", "{tmp}"],
    ["score", "--verifier", "classifier", "--weights", str(CLASSIFIER), "--class-id", "3", "{tmp}/missing.png"],
])
def test_a_user_sees_one_line_and_the_exit_status(args, tmp_path):
    proc = run_python("raise SystemExit(main(sys.argv[1:]))", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("noise-search: error: ")


HELP_IMPORTS = """
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("HEAVY", sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [
    ["--help"], ["demo", "--help"], ["bench", "--help"], ["bench", "fidelity", "--help"], ["score", "--help"],
    ["weights", "--help"],
])
def test_help_answers_without_importing_torch(args):
    proc = run_python(HELP_IMPORTS, *args)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:]
