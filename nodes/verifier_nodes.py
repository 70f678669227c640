"""Verifier Loader (a verifier from ``models/verifiers`` under ComfyUI model management) and Verifier
Score (rank any IMAGE batch)."""

import json
import os

import torch
import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
from comfy_api.latest import io

from . import reporting
from ..search.scoring import PooledScorer, batch_table, condition_for, rank_batch
from .types import HostVerifier, VerifierType
from .validation import Node

FOLDER = "verifiers"
CATEGORY = "noise-search/verifiers"
FALLBACK_KINDS = ["clip_score", "pick_score", "hpsv2", "hpsv2.1", "aesthetic", "image_reward", "clip_zero_shot", "dino_linear",
                  "self_supervised", "classifier", "vlm_grader"]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
WHERE = "put a verifier folder or file in ComfyUI/models/verifiers, or add a 'verifiers:' path to extra_model_paths.yaml"


def register_folder():
    """``models/verifiers`` with no extension filter (verifiers are folders or single files). A new name gets
    ``([models/verifiers], set())``; when extra_model_paths.yaml already declared ``verifiers:``, the default
    folder is added after those paths. Idempotent."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


register_folder()


def verifier_entries():
    """Folder and file names in every ``verifiers`` directory; a folder holding only folders is a group
    whose sub-entries are listed as ``group/name``."""
    register_folder()
    names = []
    for base in folder_paths.get_folder_paths(FOLDER):
        if not os.path.isdir(base):
            continue
        for e in sorted(os.listdir(base)):
            if e.startswith("."):
                continue
            p = os.path.join(base, e)
            subs = sorted(os.listdir(p)) if os.path.isdir(p) else []
            if subs and all(os.path.isdir(os.path.join(p, s)) for s in subs):
                names += [f"{e}/{s}" for s in subs if not s.startswith(".")]
            else:
                names.append(e)
    return sorted(set(names))


def resolve_entry(name):
    register_folder()
    for base in folder_paths.get_folder_paths(FOLDER):
        p = os.path.join(base, *name.split("/"))
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"verifier {name!r} not found in {folder_paths.get_folder_paths(FOLDER)} ({WHERE})")


def verifier_kinds():
    try:
        from ..verifiers import registry
    except ImportError as err:  # the verifier library is optional at schema time; loading reports it
        import logging
        logging.warning("noise-search: verifier registry unavailable (%s); listing the default kinds", err)
        return list(FALLBACK_KINDS)
    return [k for k in registry.available() if k != "ensemble"]


def clip_score_scales():
    try:
        from ..verifiers.clip import CLIP_SCORE_SCALES
    except ImportError:  # as verifier_kinds: the verifier library is optional at schema time
        return ["cosine", "hessel", "torchmetrics"]
    return list(CLIP_SCORE_SCALES)


def torch_modules(verifier):
    """The torch modules a core verifier holds (attributes, one level deep)."""
    mods = {}
    for k, v in vars(verifier).items():
        if isinstance(v, torch.nn.Module):
            mods[k] = v
    return mods


def host_verifier(verifier, kind, source, device="default"):
    """Wrap a loaded core verifier in a ModelPatcher so ComfyUI can load / offload it."""
    mods = torch_modules(verifier)
    if device == "cpu":
        load, offload = torch.device("cpu"), torch.device("cpu")
    else:
        load, offload = mm.get_torch_device(), mm.text_encoder_offload_device()
    patcher = None
    if mods:
        patcher = comfy.model_patcher.ModelPatcher(torch.nn.ModuleDict(mods), load_device=load, offload_device=offload)
    verifier.device = torch.device(offload)
    return HostVerifier(verifier, patcher, kind, source)


def download_progress():
    """ComfyUI progress bars for ``verifiers.weights.ensure``: one per file, in bytes."""
    import comfy.utils
    bars = {}

    def progress(done, total, name):
        if name not in bars:
            bars[name] = comfy.utils.ProgressBar(total or 1)
        bars[name].update_absolute(done, total or max(done, 1))
    return progress


class VerifierLoader(Node):
    COMBO_HINTS = {"name": WHERE}  # the names are what models/verifiers holds now

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VerifierLoader_NoiseSearch",
            display_name="Verifier Loader",
            category=CATEGORY,
            description="Load a verifier (CLIPScore, PickScore, HPS, aesthetic, ImageReward, classifier logits, DINO, VLM grader, ...) "
                        "from ComfyUI/models/verifiers. Weights load offline from that folder only and are managed by ComfyUI "
                        "(moved to the GPU to score, offloaded when the diffusion model needs the memory).",
            inputs=[
                io.Combo.Input("name", options=verifier_entries(),
                               tooltip="A folder or file in models/verifiers (or a 'verifiers:' path of extra_model_paths.yaml)."),
                io.Combo.Input("kind", options=verifier_kinds(), default="clip_score",
                               tooltip="What the weights are: which verifier to build from them."),
                io.Combo.Input("device", options=["default", "cpu"], default="default",
                               tooltip="'default': ComfyUI's device (GPU), offloaded when idle; 'cpu': always on the CPU."),
                io.Combo.Input("dtype", options=["auto", "fp32", "fp16", "bf16"], default="auto",
                               tooltip="Weight dtype; 'auto' = fp16 where ComfyUI would use it for this device, else fp32."),
                io.String.Input("options", default="", multiline=False, optional=True,
                                tooltip="Optional JSON of extra loader options, e.g. {\"num_classes\": 10} for a TorchScript classifier."),
                io.Combo.Input("clip_score_scale", options=clip_score_scales(), default="cosine", optional=True,
                               tooltip="kind clip_score only: cosine = raw cosine; hessel = 2.5*max(cos,0), the scale of the paper's "
                                       "CLIPScore numbers; torchmetrics = max(100*cos,0). All three rank images alike."),
                io.Boolean.Input("download_if_missing", default=False, optional=True,
                                 tooltip="Opt-in: when files of this kind are missing from the chosen folder, download its published "
                                         "weights from the Hugging Face Hub into it first (resumable, size/sha256 checked; refused "
                                         "under HF_HUB_OFFLINE=1). Off: the loader never touches the network."),
            ],
            outputs=[VerifierType.Output(display_name="VERIFIER", tooltip="The loaded verifier, for Verifier Score and the search nodes.")],
        )

    @classmethod
    def execute(cls, name, kind, device, dtype, options="", clip_score_scale="cosine", download_if_missing=False) -> io.NodeOutput:
        from ..verifiers.registry import load_verifier
        path = resolve_entry(name)
        if download_if_missing:
            from ..verifiers.weights import ensure
            path = ensure(kind, path, allow_download=True, progress=download_progress())
        opts = {}
        if options and options.strip():
            try:
                opts = json.loads(options)
            except json.JSONDecodeError as err:
                raise ValueError(f"options must be a JSON object, e.g. {{\"num_classes\": 10}}; got {options!r} ({err})") from err
            if not isinstance(opts, dict):
                raise ValueError(f"options must be a JSON object, got {options!r}")
        if dtype == "auto":
            dev = torch.device("cpu") if device == "cpu" else mm.get_torch_device()
            td = torch.float16 if dev.type != "cpu" and mm.should_use_fp16(dev) else torch.float32
        else:
            td = DTYPES[dtype]
        scale = clip_score_scale or "cosine"  # a value outside the list was refused by validation.Node
        if scale != "cosine":  # left at the default, the scale comes from options (if any)
            if kind != "clip_score" or opts.get("scale", scale) != scale:
                raise ValueError(f"clip_score_scale {scale!r} needs kind 'clip_score' and no other scale in options; "
                                 f"got kind {kind!r}, options scale {opts.get('scale')!r}")
            opts["scale"] = scale
        v = load_verifier(kind, path, device="cpu", dtype=td, **opts)
        return io.NodeOutput(host_verifier(v, kind, name, device))


class VerifierScore(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VerifierScore_NoiseSearch",
            display_name="Verifier Score",
            category=CATEGORY,
            description="Score an IMAGE batch with one or more verifiers: scores, the images sorted best first, the top-K, "
                        "the best index and a score table shown on the node. With several verifiers they are combined by rank "
                        "or z-score over the batch.",
            inputs=[
                io.Image.Input("images", tooltip="The images to score (a batch)."),
                VerifierType.Input("verifier", tooltip="The verifier (Verifier Loader)."),
                io.String.Input("prompt", multiline=True, default="", tooltip="Text for prompt verifiers (CLIPScore, PickScore, ...)."),
                io.Int.Input("class_id", default=-1, min=-1, max=1_000_000, tooltip="Class id for class verifiers; -1 = none."),
                io.Int.Input("top_k", default=4, min=1, max=4096,
                             tooltip="How many best images go to the top_k output (1 to the number of images)."),
                VerifierType.Input("verifier_2", optional=True, tooltip="Optional second verifier (ensemble)."),
                VerifierType.Input("verifier_3", optional=True, tooltip="Optional third verifier (ensemble)."),
                io.Combo.Input("ensemble", options=["mean_rank", "zscore"], default="mean_rank", optional=True,
                               tooltip="How several verifiers combine over the batch."),
                io.Image.Input("early_images", optional=True,
                               tooltip="x0 predictions at noise level ~0.4 of the same images, for the self-supervised verifier."),
                io.Int.Input("pick", default=-1, min=-1, max=1_000_000, optional=True,
                             tooltip="Human pick: -1 = the verifier's best; otherwise an image index among the top-K."),
            ],
            outputs=[
                io.Float.Output("scores", display_name="scores", is_output_list=True, tooltip="One score per input image, in input order."),
                io.Image.Output("sorted", display_name="sorted", tooltip="All images, best first."),
                io.Image.Output("top_k_images", display_name="top_k", tooltip="The top-K images, best first."),
                io.Int.Output("best_index", display_name="best_index", tooltip="Input index of the best image (or of the human pick)."),
                io.String.Output("table", display_name="score_table", tooltip="Score table (plain text)."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, images, verifier, prompt, class_id, top_k, verifier_2=None, verifier_3=None, ensemble="mean_rank",
                early_images=None, pick=-1) -> io.NodeOutput:
        n = int(images.shape[0])
        if not 1 <= int(top_k) <= n:  # as the search nodes: asking to keep more than there is is an error, not a clamp
            raise ValueError(f"top_k must be in [1, {n}] (the number of images to score), got {top_k}; "
                             "lower top_k or score more images")
        vs = [v for v in (verifier, verifier_2, verifier_3) if v is not None]
        scorer = PooledScorer(vs, [condition_for(v, prompt, class_id, "prompt") for v in vs], ensemble or "mean_rank")
        if scorer.needs_early and early_images is None:
            raise ValueError("the self-supervised verifier needs early_images (x0 predictions at noise level ~0.4)")
        scores, order, raw = rank_batch(scorer, images, early_images)
        k = int(top_k)
        top = order[:k]
        pick = -1 if pick is None else int(pick)
        if pick >= 0 and pick not in top:
            raise ValueError(f"pick={pick} is not among the top-{k} images {top}; pick one of those or set -1")
        best = pick if pick >= 0 else order[0]
        table = batch_table(scores, order, raw, scorer.names, best, top)
        idx = torch.tensor(order, dtype=torch.long)
        sorted_images, top_images = images[idx], images[idx[:k]]
        hidden = getattr(cls, "hidden", None)
        node_id = getattr(hidden, "unique_id", None) if hidden is not None else None
        files = reporting.save_images(top_images, f"noise_search/score_{node_id or 'node'}", "temp")
        cands = [{"index": i, "score": float(scores[i]), "nfe": 0, "round": 0, "recipe": f"image {i}", "seed": None} for i in range(len(scores))]
        ui = {"text": [table], "images": files[:1],
              "noise_search": [{"algorithm": "score", "candidates": cands, "winner": order[0], "picked": pick, "top_k": top, "images": files}]}
        return io.NodeOutput([float(s) for s in scores], sorted_images, top_images, int(best), table, ui=ui)


NODES = [VerifierLoader, VerifierScore]
