"""ComfyUI V3 entry point of the pack: registers ``models/verifiers`` and lists the nodes."""

from comfy_api.latest import ComfyExtension, io

from . import beyond_nodes, noise_nodes, save_nodes, scm_nodes, search_nodes, verifier_nodes


class NoiseSearchExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()


def all_nodes():
    return noise_nodes.NODES + verifier_nodes.NODES + search_nodes.NODES + beyond_nodes.NODES + scm_nodes.NODES + save_nodes.NODES


async def comfy_entrypoint() -> ComfyExtension:
    verifier_nodes.register_folder()
    return NoiseSearchExtension()
