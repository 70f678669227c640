"""API-format graph <-> UI-format workflow (what the ComfyUI frontend saves and loads), driven by /object_info.

``api_to_ui`` lays a graph out left to right by depth and fills every node's ``widgets_values`` in the
frontend's order (required then optional inputs, a ``control_after_generate`` value after seeds);
``ui_to_api`` reads a UI workflow back, so the tests can check that each example workflow is its API twin.
Also draws a small PNG thumbnail of a workflow's node graph (PIL only)."""

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _inputs(info):
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    for group in ("required", "optional"):
        for name in order.get(group, []):
            if group in info["input"] and name in info["input"][group]:
                yield name, info["input"][group][name]


def _is_widget(spec):
    t, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if opts.get("forceInput"):
        return False
    return isinstance(t, list) or t in WIDGET_TYPES


def _default(spec):
    t, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if "default" in opts:
        return opts["default"]
    if isinstance(t, list):
        return t[0] if t else None
    if t == "COMBO":
        return (opts.get("options") or [None])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(t)


def widget_names(info):
    out = []
    for name, spec in _inputs(info):
        if _is_widget(spec):
            out.append(name)
            opts = spec[1] if len(spec) > 1 else {}
            if opts.get("control_after_generate"):
                out.append(None)  # the control widget ("fixed", "randomize", ...)
    return out


def _depths(graph):
    memo = {}

    def depth(nid):
        if nid not in memo:
            memo[nid] = 0
            ups = [v[0] for v in graph[nid]["inputs"].values() if isinstance(v, list)]
            memo[nid] = 1 + max((depth(u) for u in ups), default=-1)
        return memo[nid]
    return {nid: depth(nid) for nid in graph}


def api_to_ui(graph, object_info, overrides=None, titles=None):
    overrides, titles = overrides or {}, titles or {}
    depths = _depths(graph)
    column_y = {}
    nodes, links = [], []
    ids = {nid: int(nid) for nid in graph}
    out_links = {}
    link_id = 0
    for nid in sorted(graph, key=lambda n: (depths[n], int(n))):
        node = graph[nid]
        info = object_info[node["class_type"]]
        values = dict(node["inputs"])
        values.update(overrides.get(nid, {}))
        inputs, widgets = [], []
        for name, spec in _inputs(info):
            v = values.get(name)
            if _is_widget(spec) and not isinstance(v, list):
                widgets.append(_default(spec) if v is None else v)
                if (spec[1] if len(spec) > 1 else {}).get("control_after_generate"):
                    widgets.append("fixed")
            elif not _is_widget(spec):
                slot = {"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO", "link": None}
                if isinstance(v, list):
                    link_id += 1
                    src, src_slot = v
                    links.append([link_id, ids[src], src_slot, ids[nid], len(inputs), object_info[graph[src]["class_type"]]["output"][src_slot]])
                    slot["link"] = link_id
                    out_links.setdefault((src, src_slot), []).append(link_id)
                inputs.append(slot)
        d = depths[nid]
        y = column_y.get(d, 40)
        h = 60 + 26 * (len(inputs) + len(widgets))
        column_y[d] = y + h + 40
        nodes.append({"id": ids[nid], "type": node["class_type"], "pos": [40 + 400 * d, y], "size": [340, h], "flags": {},
                      "order": 0, "mode": 0, "inputs": inputs, "outputs": [],
                      "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets})
        if nid in titles:
            nodes[-1]["title"] = titles[nid]
    for order, n in enumerate(sorted(nodes, key=lambda n: (depths[str(n["id"])], n["id"]))):
        n["order"] = order
        info = object_info[n["type"]]
        n["outputs"] = [{"name": info["output_name"][i], "type": t, "links": out_links.get((str(n["id"]), i), []), "slot_index": i}
                        for i, t in enumerate(info["output"])]
    return {"last_node_id": max(ids.values()), "last_link_id": link_id, "nodes": sorted(nodes, key=lambda n: n["id"]), "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}}, "version": 0.4}


def ui_to_api(ui, object_info):
    links = {l[0]: l for l in ui["links"]}
    graph = {}
    for n in ui["nodes"]:
        info = object_info[n["type"]]
        inputs = {}
        for slot in n["inputs"]:
            if slot.get("link") is not None:
                l = links[slot["link"]]
                inputs[slot["name"]] = [str(l[1]), l[2]]
        vals = list(n.get("widgets_values", []))
        names = widget_names(info)
        if len(vals) != len(names):
            raise ValueError(f"node {n['id']} ({n['type']}): {len(vals)} widget values for {len(names)} widgets {names}")
        for name, v in zip(names, vals):
            if name is not None and name not in inputs:
                inputs[name] = v
        graph[str(n["id"])] = {"class_type": n["type"], "inputs": inputs}
    return graph


def thumbnail(ui, title, size=(640, 360)):
    """A picture of the workflow: its nodes as boxes with their titles, links as lines."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font, big = ImageFont.load_default(size=13), ImageFont.load_default(size=20)
    except TypeError:
        font = big = ImageFont.load_default()
    xs = [n["pos"][0] for n in ui["nodes"]] + [n["pos"][0] + n["size"][0] for n in ui["nodes"]]
    ys = [n["pos"][1] for n in ui["nodes"]] + [n["pos"][1] + n["size"][1] for n in ui["nodes"]]
    w, h = size
    top = 50
    sx = (w - 40) / (max(xs) - min(xs))
    sy = (h - top - 20) / (max(ys) - min(ys))
    s = min(sx, sy)
    pos = lambda x, y: (20 + (x - min(xs)) * s, top + (y - min(ys)) * s)
    img = Image.new("RGB", size, (32, 34, 38))
    d = ImageDraw.Draw(img)
    d.text((20, 14), title, fill=(235, 235, 235), font=big)
    by_id = {n["id"]: n for n in ui["nodes"]}
    for l in ui["links"]:
        a, b = by_id[l[1]], by_id[l[3]]
        p = pos(a["pos"][0] + a["size"][0], a["pos"][1] + 20)
        q = pos(b["pos"][0], b["pos"][1] + 20)
        d.line([p, q], fill=(120, 160, 220), width=2)
    for n in ui["nodes"]:
        x0, y0 = pos(*n["pos"])
        x1, y1 = pos(n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        ours = n["type"].endswith("_NoiseSearch")
        d.rounded_rectangle([x0, y0, x1, y1], radius=6, fill=(70, 60, 30) if ours else (55, 58, 64),
                            outline=(230, 180, 0) if ours else (110, 110, 110), width=2)
        label = n.get("title") or n["type"].replace("_NoiseSearch", "")
        d.text((x0 + 5, y0 + 4), label[: max(4, int((x1 - x0) / 7))], fill=(240, 240, 240), font=font)
    return img
