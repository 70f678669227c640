"""Video candidates: which decoded frames a verifier scores, and how a candidate's frame scores become one score.

A video candidate decodes to frames ``[F, H, W, C]``; image verifiers score frames. A :class:`FrameSpec` names
the frames (``keyframes``: first, middle and last, as tt-scale-flux scores videos; ``every_k``: frames 0, k, 2k,
...; ``list``: explicit indices, negative ones counting from the end) and the aggregation of their scores per
candidate (``mean`` or ``min``, the worst frame). Every error names the node input to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

__all__ = ["FRAME_MODES", "AGGREGATES", "FrameSpec", "parse_frame_list", "select_frames", "aggregate", "keyframe_strip"]

FRAME_MODES = ("keyframes", "every_k", "list")
AGGREGATES = ("mean", "min")


def parse_frame_list(text: Union[str, Sequence[int], None], name: str = "video_frame_list") -> tuple[int, ...]:
    """``"0, 8, -1"`` -> (0, 8, -1); an empty or malformed list is an error naming ``name``."""
    if text is None:
        return ()
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError as err:
            raise ValueError(f"{name} must be frame indices separated by commas, e.g. '0, 8, -1', got {text!r}") from err
    return tuple(int(i) for i in text)


@dataclass(frozen=True)
class FrameSpec:
    """Which frames of a video candidate are scored (``mode``, ``every_k``, ``indices``) and how their scores
    aggregate (``how``). Checked on construction (the node inputs are named in the errors)."""

    mode: str = "keyframes"
    every_k: int = 1
    indices: tuple = ()
    how: str = "mean"

    def __post_init__(self) -> None:
        if self.mode not in FRAME_MODES:
            raise ValueError(f"video_frames must be one of {list(FRAME_MODES)}, got {self.mode!r}")
        if self.how not in AGGREGATES:
            raise ValueError(f"video_aggregate must be one of {list(AGGREGATES)}, got {self.how!r}")
        if self.mode == "every_k" and (isinstance(self.every_k, bool) or int(self.every_k) < 1):
            raise ValueError(f"video_every_k must be an integer >= 1, got {self.every_k!r}")
        if self.mode == "list":
            object.__setattr__(self, "indices", parse_frame_list(self.indices))
            if not self.indices:
                raise ValueError("video_frame_list is empty; give frame indices such as '0, 8, -1' (video_frames 'list')")

    def describe(self, num_frames: Optional[int] = None) -> dict:
        d = {"frames": self.mode, "aggregate": self.how}
        if self.mode == "every_k":
            d["every_k"] = int(self.every_k)
        if self.mode == "list":
            d["frame_list"] = list(self.indices)
        if num_frames is not None:
            d["num_frames"] = int(num_frames)
            d["scored_frames"] = select_frames(num_frames, self)
        return d


def _count(video: Union[torch.Tensor, int]) -> int:
    if torch.is_tensor(video):
        if video.ndim != 4:
            raise ValueError(f"a video candidate must be frames [F, H, W, C], got shape {tuple(video.shape)}")
        return int(video.shape[0])
    n = int(video)
    if n < 1:
        raise ValueError(f"a video needs at least one frame, got {n}")
    return n


def select_frames(video: Union[torch.Tensor, int], spec: FrameSpec) -> list[int]:
    """The indices (ascending, distinct) of the frames of ``video`` (frames [F, H, W, C], or F) that ``spec`` scores."""
    n = _count(video)
    if spec.mode == "keyframes":
        return sorted({0, (n - 1) // 2, n - 1})
    if spec.mode == "every_k":
        k = int(spec.every_k)
        if n > 1 and k >= n:
            raise ValueError(f"video_every_k {k} is past the end of the {n}-frame video (it would score frame 0 only); "
                             f"use video_every_k < {n}, or video_frames 'keyframes'")
        return list(range(0, n, k))
    out = []
    for i in spec.indices:
        if not -n <= i < n:
            raise ValueError(f"video_frame_list: frame {i} is past the end of the {n}-frame video (frames 0..{n - 1}, "
                             f"or -1..-{n} from the end)")
        j = i % n
        if j not in out:
            out.append(j)
    return sorted(out)


def aggregate(scores: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """One score per candidate from its frames' scores: ``scores`` [frames] -> scalar, or [B, frames] -> [B]."""
    if how not in AGGREGATES:
        raise ValueError(f"video_aggregate must be one of {list(AGGREGATES)}, got {how!r}")
    s = torch.as_tensor(scores)
    if s.ndim not in (1, 2) or s.shape[-1] < 1:
        raise ValueError(f"frame scores must be [frames] or [candidates, frames] with at least one frame, got shape {tuple(s.shape)}")
    return s.mean(dim=-1) if how == "mean" else s.min(dim=-1).values


def keyframe_strip(videos: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
    """Videos [B, F, H, W, C] -> one image per video, its frames ``indices`` side by side: [B, H, len * W, C]."""
    if videos.ndim != 5:
        raise ValueError(f"videos must be [B, F, H, W, C], got shape {tuple(videos.shape)}")
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    picked = videos[:, idx]  # [B, S, H, W, C]
    b, s, h, w, c = picked.shape
    return picked.permute(0, 2, 1, 3, 4).reshape(b, h, s * w, c)
