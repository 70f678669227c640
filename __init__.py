"""noise-search: inference-time scaling for diffusion models, as a ComfyUI node pack.

Importing the pack root never needs ComfyUI: the V3 entry point is resolved lazily,
so the framework-free cores (``search``, ``samplers``, ``verifiers``, ``toyworld``)
stay usable from plain Python and the CLI.
"""

__version__ = "0.1.0"

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """ComfyUI V3 entry point; imports the host-facing ``nodes`` package on demand."""
    from .nodes.extension import comfy_entrypoint as _entry

    return await _entry()


__all__ = ["comfy_entrypoint", "WEB_DIRECTORY", "__version__"]
