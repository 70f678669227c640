"""Many searches side by side: each runs in its own thread on a ToyWorld whose denoiser is a proxy, and the model
calls of every live search are merged into one batched forward per round (``Lockstep``). The searches are the
pack's own, unchanged; only their network calls are batched. Batch composition is deterministic (ordered by
thread index), so a run is reproducible on one machine."""

import threading

import torch

from ..world import ToyWorld
from .config import STEPS_PER_CANDIDATE


class Lockstep:
    """Merges the model calls of searches running in threads: each round waits until every live thread
    has asked for one forward, runs them as one batch (ordered by thread index) and hands each its rows."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.cv = threading.Condition()
        self.alive, self.pending, self.results, self.error = 0, {}, {}, None
        self.rounds = 0

    def call(self, idx, x, sigma, labels):
        with self.cv:
            self.pending[idx] = (x, sigma, labels)
            self._fire()
            while idx not in self.results:
                if self.error is not None:
                    raise RuntimeError("another search of the batch failed") from self.error
                self.cv.wait()
            return self.results.pop(idx)

    def leave(self):
        with self.cv:
            self.alive -= 1
            self._fire()

    def _fire(self):  # called with the lock held
        if not self.pending or len(self.pending) < self.alive or self.error is not None:
            return
        keys = sorted(self.pending)
        xs, ss, ys = zip(*(self.pending[k] for k in keys))
        self.pending = {}
        try:
            with torch.no_grad():
                out = self.denoiser(torch.cat(xs), torch.cat(ss), class_labels=torch.cat(ys))
        except BaseException as err:
            self.error = err
            self.cv.notify_all()
            raise
        self.rounds += 1
        i = 0
        for k, x in zip(keys, xs):
            self.results[k] = out[i:i + x.shape[0]]
            i += x.shape[0]
        self.cv.notify_all()


class _Proxy:
    """Stands in for a ToyWorld's denoiser: forwards its calls to the shared Lockstep."""

    def __init__(self, lockstep, idx, digit):
        self.lockstep, self.idx, self.digit = lockstep, idx, digit

    def __call__(self, x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(x.shape[0])
        labels = torch.full((x.shape[0],), self.digit, dtype=torch.long)
        return self.lockstep.call(self.idx, x, sigma, labels)


def run_batched(tasks, models, max_threads=256):
    """Run ``tasks`` = [(key, digit, fn)] where ``fn(world)`` runs one search on a ToyWorld of that digit.
    Returns {key: fn's return value}. Threads run in waves of ``max_threads``."""
    out = {}
    for w0 in range(0, len(tasks), max_threads):
        wave = tasks[w0:w0 + max_threads]
        ls = Lockstep(models["denoiser"])
        ls.alive = len(wave)
        errors = []

        def work(i, key, digit, fn):
            try:
                world = ToyWorld(digit, steps=STEPS_PER_CANDIDATE, teacher=models["teacher"], verifier=models["verifier"])
                world.denoiser = _Proxy(ls, i, digit)
                out[key] = fn(world)
            except BaseException as err:  # noqa: BLE001 - re-raised below in the main thread
                errors.append(err)
                with ls.cv:
                    if ls.error is None:
                        ls.error = err
                    ls.cv.notify_all()
            finally:
                ls.leave()

        threads = [threading.Thread(target=work, args=(i, *t), daemon=True) for i, t in enumerate(wave)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return out

