"""Video candidates in the core: frame selection, per-candidate aggregation, and the scorer on videos."""

import pytest
import torch

from noise_search.search.frames import FrameSpec, aggregate, keyframe_strip, parse_frame_list, select_frames
from noise_search.search.scoring import PooledScorer


def video(frames=9, h=4, w=5):
    return torch.rand(frames, h, w, 3)


@pytest.mark.parametrize("n,want", [(1, [0]), (2, [0, 1]), (5, [0, 2, 4]), (9, [0, 4, 8]), (81, [0, 40, 80]), (8, [0, 3, 7])])
def test_keyframes_are_first_middle_last(n, want):
    assert select_frames(n, FrameSpec("keyframes")) == want
    assert select_frames(video(n), FrameSpec()) == want  # the default; a video [F, H, W, C] or its frame count


@pytest.mark.parametrize("n,k,want", [(9, 1, list(range(9))), (9, 4, [0, 4, 8]), (9, 3, [0, 3, 6]), (5, 2, [0, 2, 4]), (1, 3, [0])])
def test_every_k(n, k, want):
    assert select_frames(n, FrameSpec("every_k", every_k=k)) == want


def test_frame_list_with_negative_indices_sorted_and_distinct():
    assert select_frames(9, FrameSpec("list", indices="8, 0, -1, 2")) == [0, 2, 8]
    assert parse_frame_list("0; 4 ,-1") == (0, 4, -1)


@pytest.mark.parametrize("spec,n,match", [
    (FrameSpec("list", indices="0, 9"), 9, r"video_frame_list: frame 9 is past the end of the 9-frame video"),
    (FrameSpec("list", indices=[-6]), 5, r"frame -6 is past the end of the 5-frame video"),
    (FrameSpec("every_k", every_k=5), 5, r"video_every_k 5 is past the end of the 5-frame video"),
])
def test_a_frame_past_the_end_is_refused_naming_the_input(spec, n, match):
    with pytest.raises(ValueError, match=match):
        select_frames(n, spec)


@pytest.mark.parametrize("kw,match", [
    (dict(how="median"), r"video_aggregate must be one of \['mean', 'min'\], got 'median'"),
    (dict(mode="all"), r"video_frames must be one of"),
    (dict(mode="every_k", every_k=0), r"video_every_k must be an integer >= 1"),
    (dict(mode="list", indices=""), r"video_frame_list is empty"),
    (dict(mode="list", indices="0, x"), r"video_frame_list must be frame indices"),
])
def test_bad_specs_name_their_input(kw, match):
    with pytest.raises(ValueError, match=match):
        FrameSpec(**kw)


def test_aggregate_mean_and_min():
    s = torch.tensor([[1.0, 2.0, 6.0], [0.0, -1.0, 4.0]])
    assert aggregate(s, "mean").tolist() == [3.0, 1.0]
    assert aggregate(s, "min").tolist() == [1.0, -1.0]
    assert float(aggregate(torch.tensor([2.0, 4.0]))) == 3.0
    with pytest.raises(ValueError, match="video_aggregate must be one of"):
        aggregate(s, "max")
    with pytest.raises(ValueError, match="frame scores must be"):
        aggregate(torch.zeros(2, 0))


def test_describe_records_the_choice_and_the_frames():
    d = FrameSpec("every_k", every_k=4, how="min").describe(9)
    assert d == {"frames": "every_k", "aggregate": "min", "every_k": 4, "num_frames": 9, "scored_frames": [0, 4, 8]}


def test_keyframe_strip_places_frames_side_by_side():
    v = torch.rand(2, 9, 4, 5, 3)
    strip = keyframe_strip(v, [0, 4, 8])
    assert strip.shape == (2, 4, 15, 3)
    assert torch.equal(strip[1, :, 5:10], v[1, 4]) and torch.equal(strip[0, :, :5], v[0, 0])


class MeanPixel:
    """Scores an image by its mean pixel; records the batches it saw."""
    name, condition, needs_early = "mean_pixel", None, False

    def __init__(self):
        self.seen = []

    def score(self, images, conditions, early=None):
        self.seen.append(tuple(images.shape))
        return images.flatten(1).mean(1)

    def describe(self):
        return {"name": self.name}


class Similarity:
    """Self-supervised stand-in: minus the mean absolute difference of each frame to its early prediction."""
    name, condition, needs_early = "self_supervised", None, True

    def score(self, images, conditions, early=None):
        assert early is not None and early.shape == images.shape
        return -(images - early).abs().flatten(1).mean(1)

    def describe(self):
        return {"name": self.name}


def test_the_scorer_scores_video_candidates_by_their_aggregated_frames():
    videos = torch.zeros(3, 9, 4, 5, 3)
    for b in range(3):
        for f in range(9):
            videos[b, f] = (b + 1) * 0.1 + f * 0.01
    videos[2, 4] = 0.0  # candidate 2's middle frame is bad: its min drops, its mean less so
    v = MeanPixel()
    mean = PooledScorer([v], [None], frames=FrameSpec("keyframes", how="mean")).raw(videos)["mean_pixel"]
    assert v.seen == [(9, 4, 5, 3)]  # 3 candidates x 3 keyframes, one verifier call
    expect = [sum((b + 1) * 0.1 + f * 0.01 for f in (0, 4, 8)) / 3 for b in range(2)]
    assert torch.allclose(mean[:2], torch.tensor(expect, dtype=torch.float64))
    worst = PooledScorer([MeanPixel()], [None], frames=FrameSpec("keyframes", how="min"))
    mins = worst.raw(videos)["mean_pixel"]
    assert float(mins[2]) == 0.0 and float(mins[1]) == pytest.approx(0.2)
    assert worst.describe()["video"] == {"frames": "keyframes", "aggregate": "min", "num_frames": 9, "scored_frames": [0, 4, 8]}


def test_the_scorer_on_a_batch_ranks_videos_and_images_unchanged():
    from noise_search.search.evaluate import Batch
    videos = torch.rand(4, 5, 4, 4, 3)
    s = PooledScorer([MeanPixel()], [None], frames=FrameSpec("every_k", every_k=2))
    got = s(Batch(videos))
    assert got.shape == (4,)
    assert torch.allclose(got.double(), videos[:, [0, 2, 4]].flatten(2).mean(2).mean(1).double(), atol=1e-6)
    images = torch.rand(4, 4, 4, 3)
    assert torch.allclose(s(Batch(images)).double(), images.flatten(1).mean(1).double())
    assert "video" not in PooledScorer([MeanPixel()], [None]).describe()


def test_self_supervised_compares_the_same_frames_of_the_early_prediction():
    final = torch.rand(2, 5, 4, 4, 3)
    early = final.clone()
    early[1, 2] += 0.5  # candidate 1 drifted from its early prediction on the middle frame
    early[0, 1] += 0.9  # frame 1 of candidate 0 is not a keyframe: ignored
    s = PooledScorer([Similarity()], [None], frames=FrameSpec("keyframes", how="min"))
    raw = s.raw(final, early)["self_supervised"]
    assert float(raw[0]) == 0.0 and float(raw[1]) < 0.0
    with pytest.raises(ValueError, match="early x0 predictions must be videos"):
        s.raw(final, early[:, :3])
    with pytest.raises(ValueError, match="needs the early x0"):
        s.raw(final)


def test_ensembles_rank_aggregated_video_scores():
    videos = torch.rand(3, 5, 4, 4, 3)
    s = PooledScorer([MeanPixel(), MeanPixel()], [None, None], frames=FrameSpec())
    scores = s(__import__("noise_search.search.evaluate", fromlist=["Batch"]).Batch(videos))
    assert scores.shape == (3,)
