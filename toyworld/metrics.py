"""Sample-quality metrics for the toy world, computed in float64 with torch only (no scipy):
Frechet distance between feature Gaussians, k-NN precision/recall, and classifier accuracy."""

import torch


def _as64(feats, name):
    f = torch.as_tensor(feats).detach().to("cpu", torch.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"{name} must be a [N >= 2, D] feature matrix, got shape {tuple(f.shape)}")
    return f


def gaussian_stats(feats):
    """(mean [D], covariance [D, D]) in float64, covariance with the unbiased N - 1 normalisation (as in FID code)."""
    f = _as64(feats, "feats")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(a):
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance_from_stats(mu1, cov1, mu2, cov2):
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^(1/2)).

    tr((C1 C2)^(1/2)) = sum of sqrt(eigenvalues of C1^(1/2) C2 C1^(1/2)), a symmetric PSD matrix, so
    symmetric eigendecompositions suffice and no complex sqrtm is needed.
    """
    mu1, mu2, cov1, cov2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, mu2, cov1, cov2))
    s1 = _sqrt_psd(cov1)
    m = s1 @ cov2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return float(fd.clamp_min(0))


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to two feature sets [N, D] (FID's formula)."""
    return frechet_distance_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def _kth_nn_radius(feats, k, chunk=1024):
    """Distance of every row to its k-th nearest other row."""
    out = []
    for i in range(0, feats.shape[0], chunk):
        d = torch.cdist(feats[i: i + chunk], feats)
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself at distance 0
    return torch.cat(out)


def _coverage(points, centres, radii, chunk=1024):
    """Fraction of ``points`` inside at least one ball (centre, radius)."""
    inside = []
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i: i + chunk], centres)
        inside.append((d <= radii[None, :]).any(1))
    return float(torch.cat(inside).double().mean())


def precision_recall(real_feats, fake_feats, k=3):
    """Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
    around its points with radius = distance to the k-th nearest neighbour. Precision = share of fakes
    inside the real manifold (fidelity); recall = share of reals inside the fake manifold (diversity)."""
    real, fake = _as64(real_feats, "real_feats"), _as64(fake_feats, "fake_feats")
    if not (1 <= k < min(real.shape[0], fake.shape[0])):
        raise ValueError(f"k must be in [1, {min(real.shape[0], fake.shape[0]) - 1}], got {k}")
    precision = _coverage(fake, real, _kth_nn_radius(real, k))
    recall = _coverage(real, fake, _kth_nn_radius(fake, k))
    return {"precision": precision, "recall": recall}


@torch.no_grad()
def classifier_features(classifier, x, batch_size=1024):
    """The classifier's penultimate features for images [N, 1, 8, 8] in [-1, 1]."""
    p = next(classifier.parameters())
    return torch.cat([classifier.features(x[i: i + batch_size].to(p.device, p.dtype)).float().cpu()
                      for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def predict(classifier, x, batch_size=1024):
    p = next(classifier.parameters())
    return torch.cat([classifier(x[i: i + batch_size].to(p.device, p.dtype)).argmax(-1).cpu()
                      for i in range(0, x.shape[0], batch_size)])


def class_accuracy(classifier, x, labels, batch_size=1024):
    """Share of images [N, 1, 8, 8] the classifier assigns to ``labels`` (the class they were generated for)."""
    labels = torch.as_tensor(labels).long().flatten().cpu()
    if labels.numel() != x.shape[0]:
        raise ValueError(f"got {labels.numel()} labels for {x.shape[0]} images")
    return float((predict(classifier, x, batch_size) == labels).double().mean())
