"""Does a chunk of candidates fit in this host's memory? ComfyUI's own estimates, read before sampling.

The only code of the pack that reads ComfyUI's memory figures. A search samples ``chunk_size`` candidates
as one batch; at a resolution the host cannot hold, the first sampling step of a plain run would grow the
process without bound (on a CPU there is no out-of-memory exception to halve the chunk on, and no
interruption point inside one model call). So before the first model call the search plans its chunk:

- sampling ``c`` candidates needs ComfyUI's ``estimate_memory`` (``BaseModel.memory_required``, the figure
  ComfyUI itself loads the model with): with cfg != 1 a candidate is two rows (cond + uncond in one batch),
  with cfg 1 one row (ComfyUI skips the uncond pass). ComfyUI runs cond and uncond one after the other when
  the pair does not fit, so one candidate needs at least its one-row figure;
- decoding needs ``VAE.memory_used_decode``. ComfyUI's VAE decodes as many rows at a time as fit (at least
  one) and, on an accelerator, falls back to tiled decoding on an out-of-memory error; on the CPU there is
  no such fallback, so there one decoded candidate must fit;
- free memory is ``comfy.model_management.get_free_memory(device)``; on an accelerator, plus what the other
  models loaded there hold (ComfyUI offloads them to sample), minus ComfyUI's reserve.

The largest chunk up to ``chunk_size`` whose sampling fits is used (a smaller one is logged and recorded in
the provenance); where not even one candidate fits, the search is refused with the resolution, the
chunk_size and both figures named.
"""

import logging

import comfy.model_management as mm
import comfy.sampler_helpers

GIB, MIB = 1024 ** 3, 1024 ** 2


def size(n):
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def free_bytes(device, model=None):
    """Bytes one chunk may use on ``device``: ComfyUI's free figure; on an accelerator, plus the memory of the
    models loaded there other than ``model`` (ComfyUI offloads them for sampling), minus ComfyUI's reserve."""
    free = int(mm.get_free_memory(device))
    if getattr(device, "type", str(device)) in ("cpu", "mps"):
        return free
    own = getattr(model, "model", None)
    for lm in list(mm.current_loaded_models):
        patcher = lm.model
        if patcher is not None and lm.device == device and patcher.model is not own:
            free += int(lm.model_loaded_memory())
    return free - int(mm.extra_reserved_memory())


def conds(positive, negative, cfg_rows):
    """The conditioning as ComfyUI's sampler sees it (for the cond shapes some models add to the estimate)."""
    out = {"positive": comfy.sampler_helpers.convert_cond(positive)}
    if cfg_rows == 2:
        out["negative"] = comfy.sampler_helpers.convert_cond(negative)
    return out


def sampling_bytes(model, shape, candidates, cond, cfg_rows):
    """ComfyUI's estimate for one model call on ``candidates`` candidates of latent ``shape`` (``cfg_rows`` rows each)."""
    pair, single = comfy.sampler_helpers.estimate_memory(model, [int(candidates)] + list(shape[1:]), cond)
    return int(pair if cfg_rows == 2 else single)


def decode_bytes(vae, shape):
    """ComfyUI's estimate for decoding one candidate, or None when the VAE gives none."""
    estimate = getattr(vae, "memory_used_decode", None)
    if estimate is None:
        return None
    return int(estimate([1] + list(shape[1:]), getattr(vae, "vae_dtype", None)))


def resolution(vae, shape):
    """``WxH`` in pixels of latent ``shape`` (the VAE's decode scale; 8 when it gives none)."""
    scale = vae.spacial_compression_decode() if hasattr(vae, "spacial_compression_decode") else 8
    scale = scale if isinstance(scale, int) else 8
    return f"{int(shape[-1]) * scale}x{int(shape[-2]) * scale}"


def plan_chunk(model, vae, positive, negative, shape, chunk_size, cfg, what="the search"):
    """The chunk size to sample with: the largest up to ``chunk_size`` whose sampling fits in free memory.

    Returns a dict for the provenance (sizes in bytes); raises ValueError when not even one candidate fits."""
    device = model.load_device
    free = free_bytes(device, model)
    rows = 1 if abs(float(cfg) - 1.0) < 1e-9 and not model.model_options.get("disable_cfg1_optimization", False) else 2
    cond = conds(positive, negative, rows)
    asked = int(chunk_size)
    res = resolution(vae, shape)
    latent = "x".join(str(int(d)) for d in shape)
    one_row = sampling_bytes(model, shape, 1, cond, 1)
    if one_row > free:
        raise ValueError(f"{what} at {res} (latent {latent}) cannot fit one candidate: sampling it needs about {size(one_row)} "
                         f"(ComfyUI's estimate) but {device} has {size(free)} free (chunk_size {asked}); "
                         "lower the resolution or free memory")
    dec = decode_bytes(vae, shape)
    if dec is not None and dec > free and getattr(vae.device, "type", str(vae.device)) == "cpu":
        raise ValueError(f"{what} at {res} (latent {latent}) cannot fit one candidate: decoding it on the CPU needs about "
                         f"{size(dec)} (ComfyUI's estimate) but {size(free)} is free (chunk_size {asked}); "
                         "lower the resolution or free memory")
    chunk = asked
    while chunk > 1 and sampling_bytes(model, shape, chunk, cond, rows) > free:
        chunk = max(1, min(chunk - 1, chunk * free // max(1, sampling_bytes(model, shape, chunk, cond, rows))))
    need = sampling_bytes(model, shape, chunk, cond, rows)
    plan = {"chunk_size_asked": asked, "chunk_size": chunk, "device": str(device), "free_bytes": free,
            "sampling_bytes": need, "sampling_bytes_asked": sampling_bytes(model, shape, asked, cond, rows) if chunk < asked else need,
            "decode_bytes_one": dec, "rows_per_candidate": rows, "resolution": res,
            "estimate": "ComfyUI (sampler_helpers.estimate_memory, VAE.memory_used_decode, model_management.get_free_memory)"}
    if chunk < asked:
        logging.warning("noise-search: %s at %s: chunk_size %d needs about %s to sample but %s has %s free; using chunk_size %d",
                        what, res, asked, size(plan["sampling_bytes_asked"]), device, size(free), chunk)
    return plan
