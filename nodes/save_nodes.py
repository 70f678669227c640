"""Save Image with Search Provenance: PNGs whose metadata carries the search (a ``noise_search`` text chunk)."""

import json

from comfy_api.latest import io, ui

from . import reporting
from .validation import Node


class SaveImageWithProvenance(Node):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SaveImageWithProvenance_NoiseSearch",
            display_name="Save Image with Search Provenance",
            category="noise-search",
            description="Save images to the output folder like Save Image, adding a 'noise_search' PNG text chunk with the search's "
                        "provenance JSON (algorithm, parameters, verifier ids, every candidate's recipe and score, who picked the "
                        "winner) next to ComfyUI's usual prompt / workflow chunks.",
            inputs=[
                io.Image.Input("images", tooltip="The images to save (e.g. a search node's IMAGE)."),
                io.String.Input("filename_prefix", default="noise_search/search",
                                tooltip="File name prefix; may contain a sub-folder and ComfyUI's %date% style tokens."),
                io.String.Input("provenance", force_input=True, optional=True,
                                tooltip="A search node's provenance output (JSON)."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, filename_prefix, provenance=None) -> io.NodeOutput:
        if provenance:
            try:
                json.loads(provenance)
            except json.JSONDecodeError as err:
                raise ValueError(f"provenance must be the JSON a search node outputs; it does not parse ({err})") from err
        hidden = getattr(cls, "hidden", None)
        prompt = getattr(hidden, "prompt", None) if hidden is not None else None
        extra = getattr(hidden, "extra_pnginfo", None) if hidden is not None else None
        from comfy.cli_args import args
        meta = None if args.disable_metadata else reporting.png_info(provenance, prompt, extra)
        files = reporting.save_images(images, filename_prefix, "output", meta)
        return io.NodeOutput(ui=ui.SavedImages([ui.SavedResult(f["filename"], f["subfolder"], io.FolderType.output) for f in files]))


NODES = [SaveImageWithProvenance]
