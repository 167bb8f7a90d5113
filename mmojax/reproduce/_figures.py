"""The report's figures (paper Figs. 2-7), drawn from recorded runs with matplotlib's Agg canvas."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmojax.reproduce import _results, _specs
from mmojax.train import _metrics, _plots

MODELS = _specs.MODELS
PAPER = _specs.PAPER_METHOD


def _save(fig: Figure, path: str) -> str:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def curves(
    runs: Mapping[str, str], out_dir: str, kind: str, metric: str, name: str, title: str
) -> str:
    """Figs. 2/3: per-model curves, one line per method (``runs``: method -> metrics.jsonl)."""
    return str(
        _plots.plot_comparison(
            dict(runs), out_dir, metric=metric, kind=kind, filename=name, title=title
        )
    )


def gradient_flow(matrices: Mapping[str, np.ndarray], models: Sequence[str], path: str) -> str:
    """Fig. 4: mean gradient cosine on shared keys for each pair of models, per method."""
    fig = Figure(figsize=(4.2 * len(matrices), 3.8))
    for i, (method, mat) in enumerate(matrices.items()):
        ax = fig.add_subplot(1, len(matrices), i + 1)
        im = ax.imshow(mat, vmin=-1, vmax=1, cmap="coolwarm")
        ax.set_xticks(range(len(models)), models)
        ax.set_yticks(range(len(models)), models)
        for a in range(len(models)):
            for b in range(len(models)):
                if np.isfinite(mat[a, b]):
                    ax.text(b, a, f"{mat[a, b]:.2f}", ha="center", va="center", fontsize=9)
        ax.set_title(f"{method}: gradient cosine")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def tsne(kernels: Mapping[str, Mapping[str, np.ndarray]], path: str, seed: int = 0) -> str | None:
    """Fig. 5: t-SNE of the square attention kernels, one panel per method."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rows, labels = [], []
    for method, per_model in kernels.items():
        for model, mats in per_model.items():
            rows.extend(mats)
            labels.extend((method, model) for _ in mats)
    if len(rows) < 4:
        return None
    x = np.stack(rows).astype(np.float64)
    x = PCA(n_components=min(30, len(x) - 1), random_state=seed).fit_transform(x)
    emb = TSNE(
        n_components=2, perplexity=min(10.0, (len(x) - 1) / 3), init="pca", random_state=seed
    ).fit_transform(x)
    methods = list(kernels)
    models = sorted({m for _, m in labels})
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    fig = Figure(figsize=(4.5 * len(methods), 4.2))
    for i, method in enumerate(methods):
        ax = fig.add_subplot(1, len(methods), i + 1)
        for model in models:
            idx = [k for k, lab in enumerate(labels) if lab == (method, model)]
            ax.scatter(emb[idx, 0], emb[idx, 1], c=colors[model], label=model, s=28)
        ax.set_title(f"{method}: attention kernels (t-SNE)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8)
    return _save(fig, path)


def learning_rates(metrics_path: str, path: str) -> str | None:
    """Fig. 6: per-model learning rate over training (one run)."""
    records = _metrics.read_metrics(metrics_path)
    data = _metrics.series(records, "train", "lr")
    if not data:
        return None
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    for model, (x, y) in data.items():
        ax.plot(x, y, label=model)
    ax.set_xlabel("optimizer update")
    ax.set_ylabel("learning rate")
    ax.set_title(f"per-model learning rate ({PAPER})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def compute_bars(values: Mapping[str, float], path: str, ylabel: str) -> str:
    """Fig. 7: normalised compute per training approach."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    names = list(values)
    bars = ax.bar(names, [values[n] for n in names], color=["C0", "C1", "C2"][: len(names)])
    for bar, n in zip(bars, names):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            f"{values[n]:.2f}",
            ha="center",
            va="bottom",
        )
    ax.set_ylabel(ylabel)
    ax.set_title(f"compute, normalised to {PAPER} = 1.0")
    return _save(fig, path)


def ensure_dir(path: str) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    return os.fspath(path)


def _gradient_matrix(runs) -> np.ndarray:
    """Mean gradient cosine between each pair of models over ``runs``."""
    mat = np.full((len(MODELS), len(MODELS)), np.nan)
    for i, a in enumerate(MODELS):
        mat[i, i] = 1.0
        for j, b in enumerate(MODELS):
            vals = [r["gradient_cosines"].get(a, {}).get(b) for r in runs]
            vals = [v for v in vals if v is not None]
            if vals and i != j:
                mat[i, j] = float(np.mean(vals))
    return mat


def report_figures(
    results: _results.Results, workdir: str, compute: Mapping[str, float] | None
) -> list[tuple[str, str]]:
    """Draws the report's figures into ``workdir/figures``.

    Figs. 2-6 from the last ablation setting with both ``independent`` and the
    paper's method (seed 0 for curves and t-SNE), Fig. 7 from ``compute``
    (approach -> wall time normalised to the paper's method).

    Returns:
      ``[(caption, path relative to workdir)]``.
    """
    fig_dir = ensure_dir(os.path.join(workdir, "figures"))
    idx = results.index("ablation")
    pair = ("independent", PAPER)
    setting = next(
        (
            s.name
            for s in reversed(_specs.ablation_settings())
            if all((s.name, m, MODELS) in idx for m in pair)
        ),
        None,
    )
    figs = []
    if setting is not None:
        runs = {m: idx[(setting, m, MODELS)] for m in pair}
        first = {m: runs[m][min(runs[m])] for m in pair}
        curves_of = {m: os.path.join(first[m]["_dir"], "metrics.jsonl") for m in pair}
        figs.append(
            (
                f"Fig. 2: training loss, {PAPER} vs independent ({setting}, seed "
                f"{min(runs[PAPER])})",
                curves(
                    curves_of,
                    fig_dir,
                    "train",
                    "loss",
                    "fig2_loss.png",
                    f"training loss ({setting})",
                ),
            )
        )
        figs.append(
            (
                f"Fig. 3: validation accuracy ({setting})",
                curves(
                    curves_of,
                    fig_dir,
                    "eval",
                    "main",
                    "fig3_accuracy.png",
                    f"validation accuracy ({setting})",
                ),
            )
        )
        mats = {m: _gradient_matrix(list(runs[m].values())) for m in pair}
        n = min(len(runs[m]) for m in pair)
        figs.append(
            (
                f"Fig. 4: gradient cosine on shared keys between models (mean over n={n} seeds)",
                gradient_flow(mats, MODELS, os.path.join(fig_dir, "fig4_gradient_flow.png")),
            )
        )
        kernels = {}
        for m in pair:
            if 0 in runs[m]:
                arr = _results.arrays(runs[m][0])
                kernels[m] = {x: arr[f"attn/{x}"] for x in MODELS if f"attn/{x}" in arr}
        path = tsne(kernels, os.path.join(fig_dir, "fig5_tsne_attention.png"))
        if path:
            figs.append(
                (f"Fig. 5: t-SNE of attention kernels, independent vs {PAPER} (seed 0)", path)
            )
        path = learning_rates(curves_of[PAPER], os.path.join(fig_dir, "fig6_learning_rates.png"))
        if path:
            figs.append((f"Fig. 6: per-model learning rate under {PAPER}", path))
    if compute:
        figs.append(
            (
                "Fig. 7: compute",
                compute_bars(
                    compute, os.path.join(fig_dir, "fig7_compute.png"), f"wall time ({PAPER} = 1)"
                ),
            )
        )
    return [(caption, os.path.relpath(path, workdir)) for caption, path in figs]
