"""A closed-form world for core tests: data ~ N(MU, I), whose exact denoiser is
D(x, sigma) = (x + sigma^2 MU) / (1 + sigma^2). Elementwise, so batching and chunking cannot
change a single bit."""

MU = 0.3


class CountingModel:
    """k-diffusion-style exact denoiser of N(MU, I) data that counts model evaluations per sample."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, sigma):
        self.calls += x.shape[0]
        s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
        return (x + s2 * MU) / (1 + s2)
