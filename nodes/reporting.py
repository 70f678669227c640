"""What a search shows and keeps: temp-folder images, live progress messages for the frontend
(nodes/PROTOCOL.md), the score table, the provenance JSON and the best-so-far dump on cancel."""

import json
import logging
import os

from PIL.PngImagePlugin import PngInfo

import folder_paths

from .. import __version__
from ..search.noise import NeighbourRecipe, PathRecipe, SeedRecipe, recipe_to_dict
from ..search.particle_recipe import ParticleRecipe
from ..search.report import pil_to_image, score_vs_nfe_plot, to_pil

EVENT = "noise-search.progress"
PNG_KEY = "noise_search"


def root_seed(recipe):
    """The seed a candidate descends from: its own for a seed candidate, the pivot's / root's otherwise."""
    r = recipe
    while True:
        if isinstance(r, SeedRecipe):
            return r.seed
        if isinstance(r, NeighbourRecipe):
            r = r.pivot
        elif isinstance(r, (PathRecipe, ParticleRecipe)):
            r = r.root()
        else:
            return int(getattr(r, "seed", 0))


def candidate_seed(recipe):
    """The seed that reproduces the candidate in a plain KSampler, or None when none does (neighbours, paths)."""
    return recipe.seed if isinstance(recipe, SeedRecipe) else None


def candidate_entry(c):
    return {"index": c.index, "score": float(c.score), "nfe": int(c.nfe), "round": int(c.round),
            "recipe": c.recipe.describe(), "seed": candidate_seed(c.recipe)}


def executing_prompt_id():
    from comfy_execution.utils import get_executing_context
    ctx = get_executing_context()
    return None if ctx is None else ctx.prompt_id


def send_progress(node_id, algorithm, cands, result, budget):
    """Live update after each chunk: the new candidates only (see PROTOCOL.md)."""
    if node_id is None:
        return
    from server import PromptServer
    inst = getattr(PromptServer, "instance", None)
    if inst is None:
        return
    best = result.top_k[0].index if result.top_k else (result.best.index if result.history else -1)
    inst.send_sync(EVENT, {"node": str(node_id), "prompt_id": executing_prompt_id(), "candidates": [candidate_entry(c) for c in cands],
                           "best_index": best, "nfe": int(result.nfe), "budget": budget, "algorithm": algorithm}, inst.client_id)


def save_images(images, prefix, folder="temp", metadata=None):
    """Save IMAGE rows as PNGs in ComfyUI's temp (or output) folder -> [{"filename", "subfolder", "type"}]."""
    base = folder_paths.get_temp_directory() if folder == "temp" else folder_paths.get_output_directory()
    full, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, base, images.shape[2], images.shape[1])
    os.makedirs(full, exist_ok=True)
    out = []
    for img in images:
        fn = f"{name}_{counter:05}_.png"
        # truncation, as ComfyUI's SaveImage: the PNG holds the pixels SaveImage would write for the same IMAGE
        to_pil(img, rounding="truncate").save(os.path.join(full, fn), pnginfo=metadata, compress_level=1 if folder == "temp" else 4)
        out.append({"filename": fn, "subfolder": subfolder, "type": folder})
        counter += 1
    return out


def png_info(provenance, prompt=None, extra_pnginfo=None):
    """PNG text chunks: ComfyUI's usual ``prompt`` / ``workflow`` plus ``noise_search`` (the provenance JSON)."""
    meta = PngInfo()
    if prompt is not None:
        meta.add_text("prompt", json.dumps(prompt))
    for k, v in (extra_pnginfo or {}).items():
        meta.add_text(k, json.dumps(v))
    if provenance is not None:
        meta.add_text(PNG_KEY, provenance if isinstance(provenance, str) else json.dumps(provenance))
    return meta


def plot_image(result):
    return pil_to_image(score_vs_nfe_plot({result.algorithm: result.curve()}, title=f"{result.algorithm}: best score vs search NFE"))


def provenance(result, extra, winner, picked, picked_by):
    d = result.to_dict()
    d.update(extra)
    d["pack"] = {"name": "noise-search", "version": __version__}
    d["winner_index"], d["picked"], d["picked_by"] = winner, picked, picked_by
    d["candidates"] = d.pop("history")
    return d


def dump_partial(result, extra, node_id, prompt=None, extra_pnginfo=None):
    """On cancel or error: save the best so far (PNG + JSON summary) to the temp folder before it propagates.
    The PNG also carries the prompt / workflow, so dropping it on ComfyUI restores the graph."""
    if not result.history:
        return None
    prov = provenance(result, extra, result.top_k[0].index if result.top_k else None, None, "verifier")
    prov["completed"] = False
    prefix = f"noise_search/partial_{node_id or 'node'}"
    files = []
    imgs = result.top_k_samples.get("samples") if result.top_k_samples else None
    if imgs is not None and len(imgs):
        best = imgs[0] if imgs.ndim == 5 else imgs[:1]  # a video candidate: the best's frames
        files = save_images(best, prefix, "temp", png_info(json.dumps(prov), prompt, extra_pnginfo))
    path = os.path.join(folder_paths.get_temp_directory(), f"{prefix.replace('/', os.sep)}_{result.nfe:07d}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(prov, f, indent=1)
    logging.warning("noise-search: search stopped after %d candidates (%d NFE); best so far saved to %s%s",
                    len(result.history), result.nfe, path, f" and {files[0]['filename']}" if files else "")
    return path


def ui_payload(result, algorithm, winner, picked, topk_files, winner_files):
    # "images" previews only the output; the kept top-K are shown by the pack's gallery (web/)
    return {
        "images": winner_files,
        "noise_search": [{
            "algorithm": algorithm,
            "seed": result.params.get("seed"),
            "nfe": result.nfe,
            "budget": result.params.get("budget"),
            "candidates": [candidate_entry(c) for c in result.history],
            "winner": winner,
            "picked": -1 if picked is None else picked,
            "top_k": [c.index for c in result.top_k],
            "images": topk_files,
        }],
    }


def recipe_json(recipe):
    return json.dumps(recipe_to_dict(recipe))
