"""Tiny random-weight checkpoints that ComfyUI's own loaders accept (read from comfy/model_detection.py and comfy/supported_models.py).

Built with ComfyUI's model classes, re-initialised from a fixed seed (ComfyUI's layers skip
weight init), saved as fp16 safetensors:

* ``tiny_sd15.safetensors``: 1-level SD1.5 UNet (detected as SD15, EPS) + full-size CLIP-L + TAESD VAE
* ``tiny_sd3.safetensors``: depth-2 MMDiT (detected as SD3, flow) + CLIP-L + 16-channel TAESD
* ``vae_approx/taesd_{encoder,decoder}.safetensors``: TAESD for ``--preview-method taesd``

Only ever run with a ComfyUI checkout importable (tests/nodes/conftest.py arranges that).
"""

import os
import sys

import torch
from safetensors.torch import save_file


def import_comfy(comfy_path):
    """Make the ComfyUI checkout at ``comfy_path`` importable in-process (CPU); returns None or why it cannot be."""
    if not comfy_path:
        return "COMFYUI_PATH is not set (see tests/README-comfy.md)"
    if not os.path.isfile(os.path.join(comfy_path, "comfy", "sd.py")):
        return f"COMFYUI_PATH={comfy_path} is not a ComfyUI checkout"
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)
    try:
        import comfy.cli_args
        comfy.cli_args.args.cpu = True  # before anything imports comfy.model_management
        import comfy.sd  # noqa: F401
        import comfy_api.latest  # noqa: F401
        import folder_paths  # noqa: F401
        # ComfyUI's top-level ``nodes.py`` now, while its checkout is first on sys.path: the pack has a ``nodes/``
        # package too, and pytest may later put the clone's root in front (a root folder named ``noise-search``,
        # as the README installs it, is no valid module name, so pytest inserts the folder itself).
        import nodes
    except Exception as err:  # noqa: BLE001 - any import failure means: skip, with the reason
        return f"ComfyUI at {comfy_path} does not import: {type(err).__name__}: {err}"
    if os.path.dirname(os.path.abspath(nodes.__file__)) != os.path.abspath(comfy_path):
        return f"'import nodes' found {nodes.__file__}, not ComfyUI's nodes.py in {comfy_path}"
    return None


def make_tiny_classifier(path, seed=0):
    """A TorchScript 10-class CNN with random weights: a real 'classifier' verifier that needs no download."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    torch.jit.save(torch.jit.script(net.eval()), path)
    return path


def _reinit(module, seed):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in module.state_dict().items():
        if not p.is_floating_point():
            sd[name] = p
        elif ("norm" in name or "ln_" in name) and name.endswith("weight"):
            sd[name] = torch.ones_like(p, dtype=torch.float32)
        elif name.endswith("bias"):
            sd[name] = torch.zeros_like(p, dtype=torch.float32)
        else:
            sd[name] = torch.randn(p.shape, generator=g) * 0.02
    return sd


def _unet_sd15(seed=1):
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    import comfy.ops
    unet = UNetModel(image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=[1],
                     channel_mult=[1], transformer_depth=[1], transformer_depth_output=[1, 1], transformer_depth_middle=-2,
                     context_dim=768, num_head_channels=64, use_spatial_transformer=True, use_linear_in_transformer=False,
                     legacy=False, operations=comfy.ops.disable_weight_init, device="cpu", dtype=torch.float32)
    return _reinit(unet, seed)


def _mmdit(seed=2):
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    import comfy.ops
    net = MMDiT(input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=2, adm_in_channels=2048,
                context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
                num_patches=1024, pos_embed_max_size=32, operations=comfy.ops.disable_weight_init, device="cpu", dtype=torch.float32)
    return _reinit(net, seed)


def _clip_l(seed=3):
    import comfy.sd1_clip
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    return _reinit(clip, seed)


def _taesd(channels, seed=4):
    from comfy.taesd.taesd import TAESD
    return _reinit(TAESD(latent_channels=channels), seed)


def _save(sd, path):
    save_file({k: v.to(torch.float16).contiguous() for k, v in sd.items()}, path)
    return path


def build_all(root):
    """Write the tiny models into ``root`` (a ComfyUI-style models dir); returns a dict of paths."""
    os.makedirs(os.path.join(root, "checkpoints"), exist_ok=True)
    os.makedirs(os.path.join(root, "vae_approx"), exist_ok=True)
    clip = _clip_l()
    out = {}

    sd = {"model.diffusion_model." + k: v for k, v in _unet_sd15().items()}
    sd.update({"cond_stage_model.transformer." + k[len("transformer."):] if k.startswith("transformer.") else "cond_stage_model." + k: v
               for k, v in clip.items()})
    taesd4 = _taesd(4)
    sd.update({"first_stage_model." + k: v for k, v in taesd4.items()})
    sd["first_stage_model.vae_scale"] = torch.tensor(0.18215)
    out["sd15"] = _save(sd, os.path.join(root, "checkpoints", "tiny_sd15.safetensors"))

    sd = {"model.diffusion_model." + k: v for k, v in _mmdit().items()}
    sd.update({"text_encoders.clip_l." + k: v for k, v in clip.items()})
    taesd16 = _taesd(16, seed=5)
    sd.update({"first_stage_model." + k: v for k, v in taesd16.items()})
    sd["first_stage_model.vae_scale"] = torch.tensor(1.5305)
    sd["first_stage_model.vae_shift"] = torch.tensor(0.0609)
    out["sd3"] = _save(sd, os.path.join(root, "checkpoints", "tiny_sd3.safetensors"))

    for part in ("encoder", "decoder"):
        pre = f"taesd_{part}."
        _save({k[len(pre):]: v for k, v in taesd4.items() if k.startswith(pre)},
              os.path.join(root, "vae_approx", f"taesd_{part}.safetensors"))
    return out
