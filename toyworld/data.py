"""The toy world's data: scikit-learn's bundled 8x8 digits (1797 images, shipped inside the wheel,
so nothing is ever downloaded), scaled to [-1, 1] like image latents a diffusion model sees.

scikit-learn is imported lazily: only data loading and the training/evaluation code need it,
loading the committed weights does not.
"""

import hashlib

import numpy as np
import torch

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
SPLIT_SEED = 0
TEST_FRACTION = 0.2

_CACHE = {}


def load_digits_tensor():
    """All 1797 digits as (x float32 [N, 1, 8, 8] = pixel/8 - 1 in [-1, 1], labels int64 [N]).

    Pixels are 0..16, so x/8 - 1 maps them exactly onto [-1, 1]. Cached: callers get copies.
    """
    if "digits" not in _CACHE:
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("the toy world's data needs scikit-learn (pip install scikit-learn); "
                              "it ships the 8x8 digits inside the package, nothing is downloaded") from err
        d = load_digits()
        x = torch.from_numpy(np.asarray(d.images, dtype=np.float32)).reshape(-1, *IMAGE_SHAPE) / 8.0 - 1.0
        y = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
        _CACHE["digits"] = (x, y)
    x, y = _CACHE["digits"]
    return x.clone(), y.clone()


def stratified_split(labels, test_fraction=TEST_FRACTION, seed=SPLIT_SEED):
    """Deterministic stratified split -> (train_idx, test_idx), both sorted int64 tensors.

    Per class, a fixed-seed permutation puts round(n_c * test_fraction) images in the test set,
    so every class keeps the same 80/20 ratio and the split never changes between runs or machines.
    """
    labels = torch.as_tensor(labels).long()
    g = torch.Generator().manual_seed(int(seed))
    train, test = [], []
    for c in sorted(set(labels.tolist())):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_test = int(round(idx.numel() * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def digits_split(test_fraction=TEST_FRACTION, seed=SPLIT_SEED):
    """(x_train, y_train, x_test, y_test) from the fixed stratified split of the digits."""
    x, y = load_digits_tensor()
    tr, te = stratified_split(y, test_fraction, seed)
    return x[tr], y[tr], x[te], y[te]


def data_fingerprint():
    """sha256 of the scaled digits and labels: records in the weights which data they were trained on."""
    x, y = load_digits_tensor()
    h = hashlib.sha256()
    h.update(x.numpy().tobytes())
    h.update(y.numpy().tobytes())
    return h.hexdigest()
