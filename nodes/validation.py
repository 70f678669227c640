"""One check of every node's COMBO inputs, derived from the node's own schema.

ComfyUI's /prompt validation checks a combo value against its list only for V1 nodes (whose input type
*is* the list); a V3 ``io.Combo.Input`` reaches it as the type ``"COMBO"`` with the list in its options,
so a value outside the list runs (``scheduler: "bogus"`` sampled; ``sampler_name: "not_a_sampler"`` died
in k-diffusion). Every node of the pack therefore checks its combos first thing in ``execute``, against
the ``options`` of the ``io.Combo.Input`` entries of ``define_schema()`` (so no list is written twice,
and a folder listing such as the verifier names is read as the frontend would see it now).

Nodes get the check by deriving from :class:`Node` (it wraps the ``execute`` a subclass defines); a node
that cannot, calls :func:`check_combos` itself (the search nodes, through ``search_common.begin``).
"""

import functools
import inspect

from comfy_api.latest import io

CHECKED = "_noise_search_checks_combos"


def combo_inputs(node_cls):
    """The node's COMBO inputs (``io.Combo.Input`` and subclasses such as MultiCombo), from ``define_schema()``."""
    return [i for i in node_cls.define_schema().inputs if isinstance(i, io.Combo.Input) and i.options is not None]


def label(inp):
    shown = getattr(inp, "display_name", None)
    return inp.id if not shown or shown == inp.id else f"{shown} ({inp.id})"


def check_combos(node_cls, values):
    """Raise ``ValueError`` naming the input, the value given and the valid values when a COMBO value of
    ``values`` (the execute keyword arguments) is not among its schema options. An optional combo left
    out (absent, or None) is not checked. ``node_cls.COMBO_HINTS`` ({input id: text}) may add where the
    valid values come from."""
    hints = getattr(node_cls, "COMBO_HINTS", None) or {}
    for inp in combo_inputs(node_cls):
        value = values.get(inp.id)
        if inp.id not in values or (value is None and inp.optional):
            continue
        options = list(inp.options)
        given = value if getattr(inp, "multiselect", False) and isinstance(value, (list, tuple)) else [value]
        bad = [v for v in given if v not in options]
        if bad:
            hint = f" ({hints[inp.id]})" if inp.id in hints else ""
            raise ValueError(f"{label(inp)} must be one of {options}, got {value!r}{hint}")


def checks_combos(fn):
    """Wrap an ``execute(cls, **kwargs)`` function so that it checks the COMBO inputs first."""
    if getattr(fn, CHECKED, False):
        return fn

    if inspect.iscoroutinefunction(fn):  # ComfyUI awaits an async execute: the wrap must stay a coroutine function
        @functools.wraps(fn)
        async def execute(cls, **kwargs):
            check_combos(cls, kwargs)
            return await fn(cls, **kwargs)
    else:
        @functools.wraps(fn)
        def execute(cls, **kwargs):
            check_combos(cls, kwargs)
            return fn(cls, **kwargs)

    setattr(execute, CHECKED, True)
    return execute


def is_checked(node_cls):
    """Whether the node's ``execute`` already checks its COMBO inputs (it derives from :class:`Node`)."""
    return bool(getattr(getattr(node_cls, "execute", None), CHECKED, False))


class Node(io.ComfyNode):
    """Base of the pack's nodes: the ``execute`` a subclass defines checks its COMBO inputs before it runs.

    ComfyUI executes a clone of the class, and a locked copy of that (whose attributes cannot be set), both
    created from the class ``__dict__``: they inherit the wrapped ``execute`` and are left as they are."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("execute")
        if isinstance(own, classmethod) and not getattr(own.__func__, CHECKED, False):
            cls.execute = classmethod(checks_combos(own.__func__))
