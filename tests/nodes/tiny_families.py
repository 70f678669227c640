"""Tiny random-weight models of more families (issue 15) that ComfyUI's own detection and loaders accept.

Each family is written into a ComfyUI-style models folder in the layout it ships in, so the standard loader
nodes load it: one checkpoint for CheckpointLoaderSimple (SDXL, SD3.5), or split files for UNETLoader +
CLIPLoader / DualCLIPLoader + VAELoader (FLUX, PixArt-Sigma, Wan). ``build(root, family)`` writes what a family
needs (shared files once per ``root``) and returns its :class:`Family`: file names per loader folder, the graph
settings the family is used with, and what was left out. ``build(..., check=True)`` also runs ComfyUI's
detection on the written keys and names the class it picked.

What ComfyUI fixes, and so what "tiny" can mean here (ComfyUI v0.3.64, comfy/model_detection.py,
comfy/sd.py, comfy/supported_models.py):

* FLUX: hidden size 3072, 24 heads and a 4096-wide text input are constants of the detection, not read from
  the weights; only the block counts are. The smallest FLUX ComfyUI builds is 1 double block + 0 single blocks:
  404 M parameters (408 M with the 2048-wide ``vector_in`` below), 0.78 GB in fp16. dev = with ``guidance_in``
  (guidance embedding), schnell = without.
* T5-XXL (FLUX, PixArt, SD3.5's third encoder) and UMT5-XXL (Wan) are built from fixed configs
  (t5_config_xxl.json: 4.76 B parameters; umt5 5.68 B): a random one is 9.5 / 11.4 GB in fp16, too big for a
  test. The families that use T5 get a stand-in text encoder here: ComfyUI's SD3 text encoder with CLIP-L only
  (``CLIPLoader`` type ``sd3``), which pads CLIP-L's hidden states to T5's 4096 width and pools to 2048
  (CLIP-L 768 + zeros for CLIP-G) - the conditioning shapes FLUX, PixArt and Wan read. The tiny FLUX's
  ``vector_in`` is sized for that 2048-wide pooled vector (detection reads ``vec_in_dim`` from the weights; the
  real FLUX has 768, CLIP-L's). :func:`write_t5xxl` writes a full-size random T5-XXL for a one-off measurement
  (loading it takes 34 s and 14 GB of memory).
* CLIP-L (123.7 M) and CLIP-G (694.7 M) are fixed too (sd1_clip_config.json, clip_config_bigg.json); SDXL's
  text encoder always builds both. CLIP-G in fp16 is 1.39 GB.
* SDXL's UNet must have ``model_channels`` 320, ``context_dim`` 2048, ``adm_in_channels`` 2816 and input
  transformer depths exactly [0, 0, 2, 2, 10, 10] to be detected as SDXL (smaller depths are SSD-1B, Vega or
  KOALA); channel multipliers and output / middle depths are free, so the tiny one keeps 320 channels at every
  level, 1 transformer per output level and no middle block (152 M parameters).
* SD3.5 is the SD3 model class; detection tells it from SD3 by the weights: RMS q/k norms in every joint block
  (``attn.ln_q``: 3.5 Large and Medium) and extra self-attention in the first x-blocks (``x_block.attn2``, MMDiT-X:
  3.5 Medium). The MMDiT width is 64 x depth (read from the weights), so a depth-2 MMDiT is 128 wide.
* PixArt: hidden size 1152 and 16 heads are constants; only the depth is read (1 block here: 38 M). Its sin-cos
  position embedding divides by zero below 264 px (comfy/ldm/pixart/pixartms.py:185, base size
  ``round(latent / 64) * 64 // 2`` is 0), so PixArt runs at 320 x 320 here.
* Wan: the width (multiple of 128, 128 per head), FFN width, depth and channels are read from the weights.
  Wan 2.2 is detected as Wan 2.1 unless its output has 48 channels (TI2V-5B, ``WAN22_T2V``, with the Wan 2.2
  VAE); Wan 2.2 A14B text-to-video is the Wan 2.1 architecture. The Wan VAEs are fixed size: 2.1 126.9 M
  (254 MB fp16), 2.2 704.7 M (1.41 GB fp16).
* VAEs of the image families are TAESD-style autoencoders (comfy.taesd, detected by ``taesd_decoder.1.weight``)
  with the family's latent channels and scale / shift (taesdxl / taesd3 / taef1 constants), as the fixtures of
  tiny_models.py: a real KL VAE is 84 M parameters at 128 channels (fixed) and decodes slowly on a CPU.

Weights are random (fixed seeds), fp16 on disk, written tensor by tensor (memory stays at one tensor plus a
shared random pool): norm scales 1, biases 0, everything else windows of one N(0, 0.02) pool.
Only ever run with a ComfyUI checkout importable (tiny_models.import_comfy first).
"""

import json
import math
import os
import struct
import time
from dataclasses import dataclass, field

import torch

POOL_SIZE = (1 << 24) + 3  # 16 M values: every tensor is a window at a random offset (distinct values within it)
STD = 0.02
SDXL_UNET = dict(model_channels=320, channel_mult=[1, 1, 1], num_res_blocks=[2, 2, 2], transformer_depth=[0, 0, 2, 2, 10, 10],
                 transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], transformer_depth_middle=-2)
CLIP_L_FILE, CLIP_G_FILE = "tiny_clip_l.safetensors", "tiny_clip_g.safetensors"

_DTYPES = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16", torch.float8_e4m3fn: "F8_E4M3",
           torch.int64: "I64", torch.int32: "I32"}


# --------------------------------------------------------------------------- writing

class _Pool:
    """One N(0, STD) fp16 pool; ``windows(n)`` yields pieces of it (wrapping) from the next pseudo-random offset."""

    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.values = (torch.randn(POOL_SIZE, generator=g) * STD).to(torch.float16)
        self.offsets = torch.Generator().manual_seed(seed + 1)

    def windows(self, n):
        done = 0
        while done < n:
            off = int(torch.randint(0, POOL_SIZE, (1,), generator=self.offsets))
            k = min(n - done, POOL_SIZE - off)
            yield self.values[off:off + k]
            done += k


def _rule(name):
    """How a tensor named ``name`` is filled: 'ones' (norm scales), 'zeros' (biases) or 'random'."""
    last = name.rsplit(".", 1)[-1]
    if last in ("scale", "gamma") or (last == "weight" and ("norm" in name or "ln_" in name)):
        return "ones"
    if last.endswith("bias") or last == "beta":
        return "zeros"
    return "random"


def taesd_std(name, shape):
    """LeCun-normal std for TAESD convolutions (at 0.02 a random TAESD decodes every latent to a near-black image)."""
    if "taesd_" in name and len(shape) == 4:
        return 1.0 / math.sqrt(shape[1] * shape[2] * shape[3])
    return None


def write_safetensors(path, specs, seed, dtype=torch.float16, values=None, metadata=None, std=taesd_std):
    """Write a safetensors file tensor by tensor. ``specs``: [(name, shape)]; ``values``: {name: tensor} for the
    tensors with a fixed value; the others follow :func:`_rule` (random ones: windows of a seeded N(0, 0.02) pool,
    rescaled where ``std(name, shape)`` gives a std)."""
    values = values or {}
    specs = list(specs) + [(k, tuple(v.shape)) for k, v in values.items() if k not in dict(specs)]
    header, offset = {}, 0
    dts = {}
    for name, shape in specs:
        dt = values[name].dtype if name in values else dtype
        dts[name] = dt
        n = math.prod(shape) * torch.empty((), dtype=dt).element_size()
        header[name] = {"dtype": _DTYPES[dt], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    pool = None
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for name, shape in specs:
            n = math.prod(shape)
            if name in values:
                pieces = [values[name].reshape(-1)]
            elif _rule(name) == "random":
                pool = pool or _Pool(seed)
                pieces = pool.windows(n)
                want = std(name, shape) if std is not None else None
                if want is not None:
                    pieces = (w * (want / STD) for w in pieces)
            else:
                pieces = [(torch.ones if _rule(name) == "ones" else torch.zeros)(n, dtype=torch.float16)]
            for t in pieces:
                fh.write(memoryview(t.to(dts[name]).contiguous().view(torch.uint8).numpy()))
    os.replace(tmp, path)
    return path


def specs_of(module, prefix=""):
    """[(name, shape)] of a module's state dict (build it on the meta device: no memory)."""
    return [(prefix + k, tuple(v.shape)) for k, v in module.state_dict().items()]


def _meta(fn):
    with torch.device("meta"):
        return fn()


# --------------------------------------------------------------------------- model pieces (on the meta device)

def _ops():
    import comfy.ops
    return comfy.ops.disable_weight_init


def flux_module(guidance):
    from comfy.ldm.flux.model import Flux
    return _meta(lambda: Flux(image_model="flux", in_channels=16, patch_size=2, out_channels=16, vec_in_dim=2048, context_in_dim=4096,
                              hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=0, axes_dim=[16, 56, 56],
                              theta=10000, qkv_bias=True, guidance_embed=guidance, operations=_ops(), device="meta", dtype=torch.float16))


def sdxl_unet_module():
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    return _meta(lambda: UNetModel(image_size=32, in_channels=4, out_channels=4, num_classes="sequential", adm_in_channels=2816,
                                   context_dim=2048, num_head_channels=64, use_spatial_transformer=True, use_linear_in_transformer=True,
                                   legacy=False, operations=_ops(), device="meta", dtype=torch.float16, **SDXL_UNET))


def mmdit_module(qk_norm=None, x_block_self_attn_layers=()):
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    return _meta(lambda: MMDiT(input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2, adm_in_channels=2048,
                               context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
                               num_patches=1024, pos_embed_max_size=32, qk_norm=qk_norm,
                               x_block_self_attn_layers=list(x_block_self_attn_layers), operations=_ops(), device="meta",
                               dtype=torch.float16))


def pixart_module():
    from comfy.ldm.pixart.pixartms import PixArtMS
    # not under torch.device("meta"): its constructor reads a tensor's value (drop-path rates); the layers get device="meta"
    return PixArtMS(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=1, num_heads=16, model_max_length=300,
                    micro_condition=False, pe_interpolation=0.5, operations=_ops(), device="meta", dtype=torch.float16)


def wan_module(channels=16, dim=128, ffn_dim=256, layers=1):
    from comfy.ldm.wan.model import WanModel
    return _meta(lambda: WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=channels, dim=dim, ffn_dim=ffn_dim, freq_dim=256,
                                  text_dim=4096, out_dim=channels, num_heads=dim // 128, num_layers=layers, operations=_ops(),
                                  device="meta", dtype=torch.float16))


def clip_l_module():
    import comfy.sd1_clip
    return _meta(lambda: comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float16))


def clip_g_module():
    import comfy.sdxl_clip
    return _meta(lambda: comfy.sdxl_clip.SDXLClipG(device="meta", dtype=torch.float16))


def t5xxl_module():
    import comfy.text_encoders.sd3_clip
    return _meta(lambda: comfy.text_encoders.sd3_clip.T5XXLModel(device="meta", dtype=torch.float16))


def taesd_specs(channels, prefix=""):
    from comfy.taesd.taesd import TAESD
    return [s for s in specs_of(_meta(lambda: TAESD(latent_channels=channels)), prefix) if not s[0].endswith(("vae_scale", "vae_shift"))]


def wan_vae_module(v22=False):
    if v22:
        from comfy.ldm.wan.vae2_2 import WanVAE
        return _meta(lambda: WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                    temperal_downsample=[False, True, True], dropout=0.0))
    from comfy.ldm.wan.vae import WanVAE
    return _meta(lambda: WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                temperal_downsample=[False, True, True], dropout=0.0))


# TAESD scale / shift per latent format (ComfyUI's VAELoader constants for taesdxl, taesd3, taef1)
VAE_SCALE = {"sdxl": (0.13025, 0.0), "sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}


def _scale_values(kind, prefix=""):
    scale, shift = VAE_SCALE[kind]
    return {prefix + "vae_scale": torch.tensor(scale, dtype=torch.float32), prefix + "vae_shift": torch.tensor(shift, dtype=torch.float32)}


def open_clip_g_specs(prefix):
    """CLIP-G in the open_clip layout of an SDXL checkpoint (``conditioner.embedders.1.model.``): fused q/k/v."""
    hf = dict(specs_of(clip_g_module()))
    out = [(prefix + "token_embedding.weight", hf["transformer.text_model.embeddings.token_embedding.weight"]),
           (prefix + "positional_embedding", hf["transformer.text_model.embeddings.position_embedding.weight"])]
    width = out[0][1][1]
    layers = 0
    while f"transformer.text_model.encoder.layers.{layers}.mlp.fc1.weight" in hf:
        layers += 1
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        out += [(p + "ln_1.weight", (width,)), (p + "ln_1.bias", (width,)),
                (p + "attn.in_proj_weight", (3 * width, width)), (p + "attn.in_proj_bias", (3 * width,)),
                (p + "attn.out_proj.weight", (width, width)), (p + "attn.out_proj.bias", (width,)),
                (p + "ln_2.weight", (width,)), (p + "ln_2.bias", (width,)),
                (p + "mlp.c_fc.weight", (4 * width, width)), (p + "mlp.c_fc.bias", (4 * width,)),
                (p + "mlp.c_proj.weight", (width, 4 * width)), (p + "mlp.c_proj.bias", (width,))]
    out += [(prefix + "ln_final.weight", (width,)), (prefix + "ln_final.bias", (width,)),
            (prefix + "text_projection", (width, width))]
    return out


def _hf_clip_file_specs(module):
    """An HF-format text-encoder file (``text_model.*``, ``text_projection.weight``) from comfy's SDClipModel keys."""
    return [(k[len("transformer."):], s) for k, s in specs_of(module) if k.startswith("transformer.")]


# --------------------------------------------------------------------------- families

@dataclass
class Family:
    """What a test needs to load and use a tiny family through ComfyUI's standard nodes."""

    name: str
    files: dict                      # loader folder -> [file names]
    loaders: dict                    # how the usual graph loads it (node -> inputs)
    latent: str                      # the empty-latent node of the family
    flow: bool                       # flow-matching (sCM Sigmas / Sampler run on it)
    cfg: float                       # the family's usual cfg
    detected: str = ""               # ComfyUI's supported_models class (check=True)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0


def _spec(name):
    """(files {folder: {file: writer}}, loaders, latent, flow, cfg, notes) of a family."""
    clip_l = {CLIP_L_FILE: lambda p: write_safetensors(p, _hf_clip_file_specs(clip_l_module()), seed=11)}
    clip_g = {CLIP_G_FILE: lambda p: write_safetensors(p, _hf_clip_file_specs(clip_g_module()), seed=12)}
    t5_note = ("text encoder: CLIP-L through ComfyUI's SD3 encoder (CLIPLoader type sd3: 4096-wide, pooled 2048) stands in "
               "for T5-XXL, which ComfyUI only builds at full size (4.76 B parameters)")
    if name in ("flux_dev", "flux_schnell"):
        guidance = name == "flux_dev"
        unet = f"tiny_{name}.safetensors"
        vae = "tiny_flux_ae.safetensors"
        files = {"diffusion_models": {unet: lambda p: write_safetensors(p, specs_of(flux_module(guidance)), seed=21 if guidance else 22)},
                 "vae": {vae: lambda p: write_safetensors(p, taesd_specs(16), seed=23, values=_scale_values("flux"))},
                 "text_encoders": clip_l}
        loaders = {"UNETLoader": {"unet_name": unet, "weight_dtype": "default"}, "CLIPLoader": {"clip_name": CLIP_L_FILE, "type": "sd3"},
                   "VAELoader": {"vae_name": vae}}
        return files, loaders, "EmptySD3LatentImage", True, 1.0, [t5_note, "vector_in takes the 2048-wide pooled vector (real FLUX: 768)"]
    if name == "sdxl":
        ckpt = "tiny_sdxl.safetensors"

        def write(p):
            specs = specs_of(sdxl_unet_module(), "model.diffusion_model.")
            specs += [("conditioner.embedders.0." + k, s) for k, s in specs_of(clip_l_module()) if k.startswith("transformer.text_model.")]
            specs += open_clip_g_specs("conditioner.embedders.1.model.")
            specs += taesd_specs(4, "first_stage_model.")
            return write_safetensors(p, specs, seed=31, values=_scale_values("sdxl", "first_stage_model."))
        return ({"checkpoints": {ckpt: write}}, {"CheckpointLoaderSimple": {"ckpt_name": ckpt}}, "EmptyLatentImage", False, 5.0,
                ["UNet at 320 channels on every level, 1 transformer per output level, no middle block (detection only reads the input depths)"])
    if name == "pixart_sigma":
        unet, vae = "tiny_pixart_sigma.safetensors", "tiny_sdxl_vae.safetensors"
        files = {"diffusion_models": {unet: lambda p: write_safetensors(p, specs_of(pixart_module()), seed=41)},
                 "vae": {vae: lambda p: write_safetensors(p, taesd_specs(4), seed=42, values=_scale_values("sdxl"))},
                 "text_encoders": clip_l}
        loaders = {"UNETLoader": {"unet_name": unet, "weight_dtype": "default"}, "CLIPLoader": {"clip_name": CLIP_L_FILE, "type": "sd3"},
                   "VAELoader": {"vae_name": vae}}
        return files, loaders, "EmptyLatentImage", False, 4.5, [t5_note]
    if name in ("sd35_medium", "sd35_large"):
        ckpt = f"tiny_{name}.safetensors"
        xattn = [0] if name == "sd35_medium" else []

        def write(p):
            specs = specs_of(mmdit_module("rms", xattn), "model.diffusion_model.") + taesd_specs(16, "first_stage_model.")
            return write_safetensors(p, specs, seed=51 if xattn else 52, values=_scale_values("sd3", "first_stage_model."))
        files = {"checkpoints": {ckpt: write}, "text_encoders": {**clip_l, **clip_g}}
        loaders = {"CheckpointLoaderSimple": {"ckpt_name": ckpt},
                   "DualCLIPLoader": {"clip_name1": CLIP_L_FILE, "clip_name2": CLIP_G_FILE, "type": "sd3"}}
        return files, loaders, "EmptySD3LatentImage", True, 4.5, ["text encoders: CLIP-L + CLIP-G (DualCLIPLoader type sd3); T5-XXL left out as SD3 allows"]
    if name in ("wan21_t2v", "wan22_ti2v"):
        v22 = name == "wan22_ti2v"
        unet = f"tiny_{name}.safetensors"
        vae = "tiny_wan22_vae.safetensors" if v22 else "tiny_wan21_vae.safetensors"
        files = {"diffusion_models": {unet: lambda p: write_safetensors(p, specs_of(wan_module(48 if v22 else 16)), seed=62 if v22 else 61)},
                 "vae": {vae: lambda p: write_safetensors(p, specs_of(wan_vae_module(v22)), seed=64 if v22 else 63)},
                 "text_encoders": clip_l}
        loaders = {"UNETLoader": {"unet_name": unet, "weight_dtype": "default"}, "CLIPLoader": {"clip_name": CLIP_L_FILE, "type": "sd3"},
                   "VAELoader": {"vae_name": vae}}
        latent = "Wan22ImageToVideoLatent" if v22 else "EmptyHunyuanLatentVideo"
        return files, loaders, latent, True, 6.0, [t5_note.replace("T5-XXL", "UMT5-XXL").replace("4.76", "5.68")]
    raise KeyError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")


FAMILIES = ("flux_dev", "flux_schnell", "sdxl", "pixart_sigma", "sd35_medium", "sd35_large", "wan21_t2v", "wan22_ti2v")
IMAGE_FAMILIES = ("flux_dev", "flux_schnell", "sdxl", "pixart_sigma", "sd35_medium")


def build(root, name, check=False):
    """Write family ``name``'s files under ``root`` (a ComfyUI models folder; files already there are kept) -> Family."""
    files, loaders, latent, flow, cfg, notes = _spec(name)
    t0 = time.perf_counter()
    out, total = {}, 0
    for folder, writers in files.items():
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for fname, write in writers.items():
            path = os.path.join(root, folder, fname)
            if not os.path.isfile(path):
                write(path)
            total += os.path.getsize(path)
            out.setdefault(folder, []).append(fname)
    fam = Family(name, out, loaders, latent, flow, cfg, notes=notes, seconds=time.perf_counter() - t0, bytes=total)
    if check:
        fam.detected = detect(root, fam)
    return fam


def detect(root, fam):
    """The supported_models class ComfyUI's detection picks for the family's diffusion model (keys and shapes only)."""
    import comfy.model_detection
    from safetensors import safe_open

    folder = "checkpoints" if "checkpoints" in fam.files else "diffusion_models"
    path = os.path.join(root, folder, fam.files[folder][0])
    with safe_open(path, "pt") as f:
        keys = list(f.keys())
        prefix = "model.diffusion_model." if folder == "checkpoints" else ""
        # detection reads a few shapes; give it meta tensors of the right shape for every key
        sd = {k[len(prefix):]: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in keys if k.startswith(prefix)}
    cfg = comfy.model_detection.model_config_from_unet(sd, "")
    return type(cfg).__name__ if cfg is not None else "none"


def write_t5xxl(path, dtype=torch.float8_e4m3fn):
    """A full-size random T5-XXL text-encoder file (the only size ComfyUI builds), for a one-off measurement, not a
    test: in fp8 it is 4.76 GB, written in 45 s; CLIPLoader (type pixart) loads it in 34 s at a 14.4 GB peak RSS and
    encodes a prompt in 10.5 s (one CPU thread, ComfyUI v0.3.64). fp16 doubles the file to 9.5 GB."""
    return write_safetensors(path, _hf_clip_file_specs(t5xxl_module()), seed=13, dtype=dtype)


# --------------------------------------------------------------------------- in-process loading

PROMPT = "a photo of a cat"
LATENT_SIZE = {"pixart_sigma": 320}  # PixArt's position embedding divides by zero below 264 px (pixartms.py:185)


def empty_latent(name, size=None, frames=5):
    """What the family's empty-latent node gives at ``size`` px (64, PixArt 320) and ``frames`` video frames."""
    size = size or LATENT_SIZE.get(name, 64)
    if name == "wan22_ti2v":
        return torch.zeros(1, 48, (frames - 1) // 4 + 1, size // 16, size // 16)
    if name == "wan21_t2v":
        return torch.zeros(1, 16, (frames - 1) // 4 + 1, size // 8, size // 8)
    return torch.zeros(1, 4 if name in ("sdxl", "pixart_sigma") else 16, size // 8, size // 8)


def load(fam, prompt=PROMPT, negative=""):
    """Load a built family through ComfyUI's own loader nodes (its model folders must include the family's root) and
    encode the prompts -> {"model", "clip", "vae", "positive", "negative", "latent", "cfg", "family"}. FLUX-dev's
    positive carries FluxGuidance 3.5; FLUX's negative is its positive (cfg 1 never evaluates it)."""
    import nodes
    import node_helpers

    L = fam.loaders
    if "CheckpointLoaderSimple" in L:
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(**L["CheckpointLoaderSimple"])[:3]
    else:
        model = nodes.UNETLoader().load_unet(**L["UNETLoader"])[0]
        vae = nodes.VAELoader().load_vae(**L["VAELoader"])[0]
    if "DualCLIPLoader" in L:
        clip = nodes.DualCLIPLoader().load_clip(**L["DualCLIPLoader"])[0]
    elif "CLIPLoader" in L:
        clip = nodes.CLIPLoader().load_clip(**L["CLIPLoader"])[0]
    with torch.inference_mode():
        pos = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
        neg = clip.encode_from_tokens_scheduled(clip.tokenize(negative))
    if fam.name == "flux_dev":
        pos = node_helpers.conditioning_set_values(pos, {"guidance": 3.5})
    if fam.name.startswith("flux"):
        neg = pos
    return {"model": model, "clip": clip, "vae": vae, "positive": pos, "negative": neg, "family": fam.name,
            "latent": {"samples": empty_latent(fam.name)}, "cfg": fam.cfg}
