"""The ComfyUI side of the node tests and the benchmarks, in one place: load a tiny checkpoint, run the
search through the node adapters or by hand through ``comfy.sample``, watch model management.

Host imports live here and in the tests, never in ``benchmarks/``: the benchmark scripts orchestrate and
time, this module touches ComfyUI (imported first with ``tiny_models.import_comfy``).
"""

import contextlib
import os

import torch

import tiny_models
from tiny_models import import_comfy  # noqa: F401 - re-exported for the benchmarks

PROMPT = "a photo of a cat"


def load_checkpoint(path, latent_hw=8):
    """A tiny checkpoint through ComfyUI's own loader, with the cat prompt and an empty negative encoded."""
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    with torch.inference_mode():
        pos = clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    return {"model": model, "clip": clip, "vae": vae, "positive": pos, "negative": neg,
            "latent": {"samples": torch.zeros(1, 4, latent_hw, latent_hw)}}


def use_temp_dirs(root):
    """Point ComfyUI's temp and output folders into ``root``."""
    import folder_paths

    folder_paths.set_temp_directory(os.path.join(root, "temp"))
    folder_paths.set_output_directory(os.path.join(root, "output"))


def sd15_world(root, latent_hw=8, build=True):
    """Tiny SD1.5 (built into ``root`` unless ``build`` is False), prompts, and a tiny TorchScript classifier as
    a host-managed VERIFIER; ComfyUI's temp/output folders point into ``root``."""
    from noise_search.nodes.verifier_nodes import host_verifier
    from noise_search.verifiers.registry import load_verifier

    if build:
        tiny_models.build_all(root)
    m = load_checkpoint(os.path.join(root, "checkpoints", "tiny_sd15.safetensors"), latent_hw)
    cls = os.path.join(root, "tiny_cls.pt")
    if not os.path.isfile(cls):
        tiny_models.make_tiny_classifier(cls)
    m["verifier"] = host_verifier(load_verifier("classifier", cls, num_classes=10, size=32), "classifier", "tiny_cls.pt", "cpu")
    use_temp_dirs(root)
    return m


def adapter_search(m, n, chunk, top_k, steps, cfg, sampler="euler", scheduler="normal", class_id=3, verifier=None):
    """The search node's path through its adapters, minus the node's own extras (calibration, final render, UI)."""
    import comfy.samplers
    from noise_search.nodes.comfy_adapters import Generator, SamplingSetup, resolve_sigmas
    from noise_search.search.scoring import PooledScorer, condition_for
    from noise_search.search.random_search import random_search

    def search():
        with torch.inference_mode():
            sig = resolve_sigmas(m["model"], sampler, scheduler, steps, 1.0)
            setup = SamplingSetup(m["model"], m["positive"], m["negative"], m["latent"], m["vae"],
                                  comfy.samplers.sampler_object(sampler), sig, cfg)
            gen = Generator(setup)
            v = verifier or m["verifier"]
            scorer = PooledScorer([v], [condition_for(v, "", class_id)])
            return random_search(gen, scorer, setup.shape, seed=0, count=n, nfe_per_candidate=steps, chunk_size=chunk,
                                 top_k=top_k, on_scored=lambda c, r: scorer.commit(c))
    return search


def hand_search(m, n, chunk, top_k, steps, cfg, keep, sampler="euler", scheduler="normal", class_id=3):
    """The same work written by hand: ``comfy.sample.sample`` + ``vae.decode`` + the verifier, chunk by chunk;
    ``keep(best, scores, images, latents, k)`` merges each chunk into the running top-K."""
    import comfy.sample

    def hand():
        with torch.inference_mode():
            lat = comfy.sample.fix_empty_latent_channels(m["model"], m["latent"]["samples"])
            m["verifier"].load()
            best = None
            for c0 in range(0, n, chunk):
                seeds = list(range(c0, min(n, c0 + chunk)))
                noise = torch.cat([comfy.sample.prepare_noise(lat, s) for s in seeds])
                out = comfy.sample.sample(m["model"], noise, steps, cfg, sampler, scheduler, m["positive"], m["negative"],
                                          lat.repeat(len(seeds), 1, 1, 1), denoise=1.0, disable_pbar=True, seed=seeds[0])
                images = m["vae"].decode(out).float().cpu()
                best = keep(best, m["verifier"].verifier.score(images, class_id), images, out.float().cpu(), top_k)
            return best
    return hand


def random_search_node(m, n, chunk, top_k, steps, cfg, class_id=3, verifier=None, prompt=""):
    """A full Random Search node run on ``m``."""
    from noise_search.nodes.search_nodes import RandomSearch

    kw = dict(model=m["model"], positive=m["positive"], negative=m["negative"], latent_image=m["latent"], vae=m["vae"],
              verifier=verifier or m["verifier"], verifier_prompt=prompt, class_id=class_id, seed=0, sampler_name="euler",
              scheduler="normal", steps=steps, cfg=cfg, denoise=1.0, budget=0, chunk_size=chunk, top_k=top_k, count=n,
              proxy_steps=0)

    def node():
        with torch.inference_mode():
            return RandomSearch.execute(**kw)
    return node


@contextlib.contextmanager
def load_models_gpu_calls(verifier):
    """Record every ``comfy.model_management.load_models_gpu`` call as a list of names per call:
    'verifier' for ``verifier``'s patcher, 'diffusion_model' for a diffusion model, else the class name."""
    import comfy.model_base
    import comfy.model_management as mm

    calls, real = [], mm.load_models_gpu

    def name(p):
        if p is verifier.patcher:
            return "verifier"
        if isinstance(getattr(p, "model", None), comfy.model_base.BaseModel):
            return "diffusion_model"
        return type(getattr(p, "model", p)).__name__

    def spy(models, *a, **k):
        calls.append([name(p) for p in models])
        return real(models, *a, **k)

    mm.load_models_gpu = spy
    try:
        yield calls
    finally:
        mm.load_models_gpu = real


def snapshot(folder, pattern):
    """{file: modification time} of the files matching ``pattern`` in ``folder`` (empty when it does not exist)."""
    return {f: f.stat().st_mtime_ns for f in folder.glob(pattern)} if folder.is_dir() else {}


def written_since(folder, pattern, before):
    """Files matching ``pattern`` written after ``snapshot`` (new or rewritten: earlier tests' files may share a name)."""
    return sorted((f for f in folder.glob(pattern) if before.get(f) != f.stat().st_mtime_ns), key=lambda f: f.stat().st_mtime_ns)


def interrupting_verifier(verifier, at_call=2):
    """A copy of the VERIFIER ``verifier`` that raises ComfyUI's interrupt flag on its ``at_call``-th scoring call
    (the next progress update or sampler step then cancels the search, as the Cancel button does)."""
    import comfy.model_management as mm
    from noise_search.nodes.types import HostVerifier
    calls = {"n": 0}

    class Interrupting(HostVerifier):
        def score(self, images, conditions=None, early=None):
            calls["n"] += 1
            if calls["n"] == at_call:
                mm.interrupt_current_processing(True)
            return super().score(images, conditions, early)

    return Interrupting(verifier.verifier, verifier.patcher, verifier.kind, verifier.source)
