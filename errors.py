"""A readable, folder-independent name for the pack's own exception classes.

ComfyUI imports a custom-node folder under its path (``/.../custom_nodes/noise-search``) and reports an
exception by ``module + '.' + qualname``, so an error of the pack would read
``/.../custom_nodes/noise-search.verifiers.files.MissingWeightsError: ...``. Deriving from :class:`PackError`
renames the class's module to ``noise_search.<module inside the pack>`` (``noise_search.verifiers.files``),
whatever name the pack was imported under. Framework-free: the cores use it without the host.
"""

ROOT = __name__[: -len(".errors")] if __name__.endswith(".errors") else ""
PACKAGE = "noise_search"


def readable_module(module):
    """``<root>.verifiers.files`` -> ``noise_search.verifiers.files`` (a module outside the pack is kept)."""
    if ROOT and module.startswith(ROOT + "."):
        return PACKAGE + module[len(ROOT):]
    return module


class PackError:
    """Mixin of every exception class the pack defines: ``class MissingWeightsError(PackError, FileNotFoundError)``."""

    __module__ = readable_module(__name__)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = readable_module(cls.__module__)
