"""Verifier throughput vs the bare model forward, and the effect of the text-embedding cache; JSON on stdout.

    python benchmarks/verifiers_speed.py [--batch 16] [--reps 7] [--threads 1]

Every verifier is built on a small random config (CPU, float32), saved in its published/offline layout and loaded
through ``load_verifier``, then timed (interleaved A/B, medians) against the bare forward of the same modules on
the same batch with inputs prepared beforehand (preprocessed pixels, precomputed text/class embeddings or tokens).
Images come at the model's resolution, so ``ratio = verifier img/s / bare img/s`` is the wrapper's overhead
(normalisation, batching, cache look-ups, dtype/device moves); target >= 0.9. The cache section times
``clip_score`` and ``clip_zero_shot`` with a warm LRU cache vs ``cache_size=0`` (text re-encoded every call).
Run by hand; not part of the test suite.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from _util import context, emit, import_pack, interleave  # noqa: E402

import_pack()
import verifiers_support as S  # noqa: E402

from noise_search.verifiers import EnsembleVerifier, load_verifier  # noqa: E402
from noise_search.verifiers.clip import AESTHETIC_FILE, RewardMLP  # noqa: E402

PROMPT = "a photo of a cat"


def clip_config(tok, width=128, layers=4, heads=4, image=64, patch=8, proj=64):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
                         max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads, image_size=image,
                           patch_size=patch),
        projection_dim=proj)


def build(root):
    """Save every verifier's files under ``root``; returns {name: (path, opts)} and helper objects."""
    from transformers import CLIPModel, Dinov2Config, Dinov2Model

    tok = S.synthetic_clip_tokenizer()
    torch.manual_seed(0)
    clip = CLIPModel(clip_config(tok)).eval()
    cdir = os.path.join(root, "clip")
    clip.save_pretrained(cdir)
    tok.save_pretrained(cdir)
    adir = os.path.join(root, "aesthetic")
    os.makedirs(adir)
    torch.save(RewardMLP(64).state_dict(), os.path.join(adir, AESTHETIC_FILE))
    os.symlink(cdir, os.path.join(adir, "clip"))
    ddir = os.path.join(root, "dino")
    Dinov2Model(Dinov2Config(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, image_size=64, patch_size=8)).save_pretrained(ddir)
    torch.save(torch.nn.Linear(256, 100).state_dict(), os.path.join(ddir, "dinov2_linear_head.pth"))
    S.write_json(os.path.join(ddir, "preprocessor_config.json"), {"crop_size": {"height": 64, "width": 64}, "size": {"shortest_edge": 64},
                                                                  "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]})
    hdir = os.path.join(root, "hps")
    os.makedirs(hdir)
    ref = S.RefOpenCLIP(len(tok), image=64, patch=8, vwidth=128, vlayers=4, vheads=4, twidth=128, tlayers=4, theads=4, embed=64)
    torch.save({"state_dict": ref.state_dict()}, os.path.join(hdir, "HPS_v2_compressed.pt"))
    tok.save_pretrained(hdir)
    idir = os.path.join(root, "ir")
    os.makedirs(idir)
    S.synthetic_bert_vocab(os.path.join(idir, "vocab.txt"))
    with open(os.path.join(idir, "vocab.txt")) as f:
        n = sum(1 for _ in f)
    med = S.tiny_med_config(n + 2)
    S.write_json(os.path.join(idir, "med_config.json"), med)
    torch.save(S.RefImageReward(n + 2, med).state_dict(), os.path.join(idir, "ImageReward.pt"))
    qdir = os.path.join(root, "qwen")
    S.save_tiny_qwen2vl(qdir)
    return {
        "clip_score": (cdir, {}), "pick_score": (cdir, {}), "hpsv2": (hdir, {"vision_heads": 4, "text_heads": 4}),
        "aesthetic": (adir, {}), "clip_zero_shot": (cdir, {"class_names": [f"class {i}" for i in range(100)]}),
        "dino_linear": (ddir, {}), "self_supervised": (ddir, {}), "image_reward": (idir, {"vision_heads": 3}), "vlm_grader": (qdir, {}),
    }


def bare_fn(name, v, images, cond):
    """The verifier's model work on prepared inputs (no wrapper)."""
    with torch.no_grad():
        if name in ("clip_score", "pick_score", "hpsv2", "aesthetic", "clip_zero_shot"):
            px = v.preprocess(images)
            m = v.model
            if name == "aesthetic":
                mlp = v.mlp
                return lambda: mlp(F.normalize(m.visual_projection(m.vision_model(pixel_values=px).pooler_output), dim=-1))
            if name == "clip_zero_shot":
                t = v.class_embeds(cond)
            else:
                t = v.text_embeds(cond)
            return lambda: (F.normalize(m.visual_projection(m.vision_model(pixel_values=px).pooler_output), dim=-1) * t).sum(-1)
        if name == "dino_linear":
            px = v.preprocess(images)
            return lambda: v.head(v.features(px))
        if name == "self_supervised":
            feats = v.features
            px = feats.preprocess(torch.cat([images, images.flip(1)]))
            return lambda: feats.model(pixel_values=px).pooler_output
        if name == "image_reward":
            px = v.preprocess(images)
            ids, mask = v.tokenize(cond)
            return lambda: v.reward(px, ids, mask)
        if name == "vlm_grader":
            from noise_search.verifiers.vlm import to_pil

            inputs = v.processor(text=[v.text_for(p) for p in cond], images=to_pil(images), return_tensors="pt", padding=True)
            inputs = {k: val for k, val in inputs.items() if k in v._fwd_params}
            return lambda: v.model(**inputs).logits
    raise KeyError(name)


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"context": context(), "batch": args.batch, "reps": args.reps, "verifiers": {}, "text_cache": {}}
    with tempfile.TemporaryDirectory() as root:
        specs = build(root)
        loaded = {}
        for name, (path, opts) in specs.items():
            v = load_verifier(name, path, batch_size=args.batch, **opts)
            loaded[name] = v
            size = 64 if name != "vlm_grader" else 56
            if name == "image_reward":
                size = 32
            bs = args.batch if name != "vlm_grader" else 4
            g = torch.Generator().manual_seed(0)
            images = torch.rand(bs, size, size, 3, generator=g)
            cond = [3] * bs if v.condition == "class" else ([PROMPT] * bs if v.condition == "prompt" else None)
            early = images.flip(1) if v.needs_early else None
            bare = torch.no_grad()(bare_fn(name, v, images, cond))
            v.score(images, cond, early)  # warm the cache
            t = interleave({"verifier": lambda: v.score(images, cond, early), "bare": bare}, args.reps)
            wv, wb = med(t["verifier"]["wall"]), med(t["bare"]["wall"])
            out["verifiers"][name] = {"batch": bs, "image_size": size, "verifier_img_per_s": bs / wv, "bare_img_per_s": bs / wb,
                                      "ratio": wb / wv, "meets_0.9": wb / wv >= 0.9}
        # ensemble of three (mean rank): its bare cost is the members' bare forwards
        ens = EnsembleVerifier([loaded["clip_score"], loaded["aesthetic"], loaded["hpsv2"]])
        images = torch.rand(args.batch, 64, 64, 3, generator=torch.Generator().manual_seed(1))
        cond = [PROMPT] * args.batch
        bares = [torch.no_grad()(bare_fn(n, loaded[n], images, cond)) for n in ("clip_score", "aesthetic", "hpsv2")]
        t = interleave({"verifier": lambda: ens.score(images, cond), "bare": lambda: [b() for b in bares]}, args.reps)
        wv, wb = med(t["verifier"]["wall"]), med(t["bare"]["wall"])
        out["verifiers"]["ensemble_mean_rank(clip_score+aesthetic+hpsv2)"] = {
            "batch": args.batch, "verifier_img_per_s": args.batch / wv, "bare_img_per_s": args.batch / wb, "ratio": wb / wv, "meets_0.9": wb / wv >= 0.9}
        # text-embedding cache
        for name, opts in (("clip_score", {}), ("clip_zero_shot", specs["clip_zero_shot"][1])):
            path = specs[name][0]
            warm = load_verifier(name, path, batch_size=args.batch, **opts)
            cold = load_verifier(name, path, batch_size=args.batch, cache_size=0, **opts)
            if name == "clip_zero_shot":
                cold.templates = warm.templates = ["a photo of a {}.", "a drawing of a {}.", "art of the {}.", "a close-up photo of a {}."]
            images = torch.rand(args.batch, 64, 64, 3, generator=torch.Generator().manual_seed(2))
            cond = [3] * args.batch if name == "clip_zero_shot" else [PROMPT] * args.batch
            t = interleave({"cached": lambda: warm.score(images, cond), "uncached": lambda: cold.score(images, cond)}, args.reps)
            wc, wu = med(t["cached"]["wall"]), med(t["uncached"]["wall"])
            enc = (lambda: cold.class_embedding_of([3])) if name == "clip_zero_shot" else (lambda: cold.encode_texts([PROMPT]))
            te = med(interleave({"encode": torch.no_grad()(enc)}, args.reps)["encode"]["wall"])
            out["text_cache"][name] = {"batch": args.batch, "with_cache_s": wc, "without_cache_s": wu, "speedup": wu / wc, "text_encode_s": te,
                                       "cache_hits": warm.cache.hits, "cache_misses": warm.cache.misses}
    emit(out)


if __name__ == "__main__":
    main()
