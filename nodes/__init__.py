"""ComfyUI nodes (V3 API). The only package of the pack that imports ComfyUI (comfy, comfy_api,
folder_paths, latent_preview, server); it is imported lazily by the root ``comfy_entrypoint``, so
``import noise_search`` works without ComfyUI."""
