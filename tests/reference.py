"""Plain NumPy transcriptions of the paper's Algorithms 1-3 and of AdamW.

Trees here are ``{model: {path: np.ndarray}}`` with explicit keys
``{model: {path: key}}``; the transcription follows the paper's pseudo-code
loop by loop, with mmojax's documented conventions: weights normalised to sum
to 1 over models, and a key pools only when its members span two models.
"""

from __future__ import annotations

import numpy as np


def normalise(weights, models):
    raw = {m: float(weights.get(m, 1.0)) if weights else 1.0 for m in models}
    total = sum(raw.values())
    return {m: raw[m] / total for m in models}


def _key_models(keys):
    owners = {}
    for m, paths in keys.items():
        for k in paths.values():
            owners.setdefault(k, set()).add(m)
    return owners


def share(grads, keys, weights, alpha, reduction="mean"):
    """Algorithm 1."""
    w = normalise(weights, list(grads))
    cache, total = {}, {}
    for m, paths in grads.items():  # lines 2-10
        for p, g in paths.items():
            k = keys[m][p]
            cache.setdefault(k, np.zeros_like(g, dtype=np.float64))
            cache[k] = cache[k] + w[m] * g
            total[k] = total.get(k, 0.0) + w[m]
    owners = _key_models(keys)
    out = {}
    for m, paths in grads.items():  # lines 11-18
        out[m] = {}
        for p, g in paths.items():
            k = keys[m][p]
            if len(owners[k]) >= 2:
                pool = cache[k] / total[k] if reduction == "mean" else cache[k]
                out[m][p] = (1 - alpha) * g + alpha * pool
            else:
                out[m][p] = g.copy()
    return out


def sync(params, keys, weights, beta):
    """Algorithm 2."""
    w = normalise(weights, list(params))
    owners = _key_models(keys)
    out = {m: {p: v.copy() for p, v in paths.items()} for m, paths in params.items()}
    for k in owners:
        if len(owners[k]) < 2:
            continue
        avg, total = None, 0.0
        for m, paths in params.items():
            for p, v in paths.items():
                if keys[m][p] == k:
                    avg = w[m] * v if avg is None else avg + w[m] * v
                    total += w[m]
        avg = avg / total
        for m, paths in params.items():
            for p, v in paths.items():
                if keys[m][p] == k:
                    out[m][p] = (1 - beta) * v + beta * avg
    return out


class Convergence:
    """Algorithm 3 with a Python list of losses per model."""

    def __init__(self, models, window, update_every, ema=0.9, lo=0.5, hi=1.5):
        self.hist = {m: [] for m in models}
        self.rates = {m: 1.0 for m in models}
        self.window, self.every, self.ema, self.lo, self.hi = window, update_every, ema, lo, hi
        self.count = 0

    def step(self, losses):
        self.count += 1
        for m, loss in losses.items():
            if np.isfinite(loss):
                self.hist[m].append(float(loss))
        if self.count % self.every == 0:
            for m, hist in self.hist.items():
                if len(hist) >= self.window:
                    recent = np.array(hist[-self.window :])
                    slope = np.polyfit(np.arange(self.window), recent, 1)[0]
                    norm_rate = 1.0 / (1.0 + abs(slope))
                    self.rates[m] = self.ema * self.rates[m] + (1 - self.ema) * norm_rate
        return {m: float(np.clip(1.0 / r, self.lo, self.hi)) for m, r in self.rates.items()}


def schedule(t, lr, warmup, total=None, min_ratio=0.0):
    value = lr * (min(t / warmup, 1.0) if warmup else 1.0)
    if total is not None:
        progress = np.clip((t - warmup) / (total - warmup), 0.0, 1.0)
        value *= min_ratio + (1 - min_ratio) * 0.5 * (1 + np.cos(np.pi * progress))
    return value


def run_optimizer(
    params,
    grads_seq,
    losses_seq,
    keys,
    *,
    lr,
    weights=None,
    alpha=0.2,
    beta=0.1,
    every=10,
    warmup=0,
    total=None,
    wd=0.01,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    adaptive=True,
    window=4,
    update_every=2,
    reduction="mean",
):
    """The whole MultiModelOptimizer update, step by step, in float64."""
    models = list(params)
    w = normalise(weights, models)
    p = {m: {k: v.astype(np.float64) for k, v in d.items()} for m, d in params.items()}
    mu = {m: {k: np.zeros_like(v) for k, v in d.items()} for m, d in p.items()}
    nu = {m: {k: np.zeros_like(v) for k, v in d.items()} for m, d in p.items()}
    conv = Convergence(models, window, update_every)
    for t, (grads, losses) in enumerate(zip(grads_seq, losses_seq)):
        g = share(grads, keys, weights, alpha, reduction) if alpha else grads
        scales = conv.step(losses) if adaptive else {m: 1.0 for m in models}
        base = schedule(t, lr, warmup, total)
        for m in models:
            lr_m = base * len(models) * w[m] * scales[m]
            for k in p[m]:
                mu[m][k] = b1 * mu[m][k] + (1 - b1) * g[m][k]
                nu[m][k] = b2 * nu[m][k] + (1 - b2) * g[m][k] ** 2
                mhat = mu[m][k] / (1 - b1 ** (t + 1))
                vhat = nu[m][k] / (1 - b2 ** (t + 1))
                direction = mhat / (np.sqrt(vhat) + eps) + wd * p[m][k]
                p[m][k] = p[m][k] - lr_m * direction
        if beta and every and (t + 1) % every == 0:
            p = sync(p, keys, weights, beta)
    return p
