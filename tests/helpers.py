"""Small multi-model trees shared by the optimizer tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import mmojax
from mmojax.optim import _tree

# Three models; "a" has two attention leaves of one key (several members per
# key in one model), "c" has a transposed ffn kernel that pools with nobody.
SHAPES = {
    "a": {
        "attn": {"q": (4, 3), "k": (4, 3)},
        "mlp": {"kernel": (3, 5), "bias": (5,)},
        "norm": {"scale": (3,)},
    },
    "b": {
        "attn": {"q": (4, 3)},
        "mlp": {"kernel": (3, 5), "bias": (5,)},
        "norm": {"scale": (3,)},
        "head": {"kernel": (3, 2)},
    },
    "c": {
        "attn": {"q": (4, 3), "v": (4, 3)},
        "mlp": {"kernel": (5, 3)},
        "embed": {"embedding": (10, 3)},
        "norm": {"scale": (3,)},
    },
}
WEIGHTS = {"a": 1.0, "b": 0.8, "c": 1.2}


def make_tree(seed=0, dtype=jnp.float32, shapes=SHAPES):
    leaves, treedef = jax.tree_util.tree_flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    arrays = [jax.random.normal(k, s, dtype) for k, s in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(treedef, arrays)


def to_flat_np(tree):
    """``{model: {path: np.float64 array}}``."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        model = _tree.key_name(path[0])
        out.setdefault(model, {})[_tree.path_string(path[1:])] = np.asarray(leaf, np.float64)
    return out


def flat_keys(tree):
    labels = mmojax.classify_parameters(tree)
    return {
        m: {p: (k.type, k.shape) for p, k in d.items()} for m, d in to_flat_np_obj(labels).items()
    }


def to_flat_np_obj(tree):
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out.setdefault(_tree.key_name(path[0]), {})[_tree.path_string(path[1:])] = leaf
    return out


def assert_close_flat(tree, ref, rtol=1e-5, atol=1e-6):
    got = to_flat_np(tree)
    assert got.keys() == ref.keys()
    for m in ref:
        assert got[m].keys() == ref[m].keys()
        for p in ref[m]:
            np.testing.assert_allclose(
                got[m][p], ref[m][p], rtol=rtol, atol=atol, err_msg=f"{m}/{p}"
            )


def cohort_optimizer(grouping, model_weights, **overrides):
    """The short-schedule ``multi_model_optimizer`` the cohort and mesh tests share:
    strong sharing and sync (every 4 updates), clipping and a fast convergence EMA,
    so a few steps exercise every stage."""
    kwargs = dict(
        learning_rate=3e-2,
        warmup_steps=2,
        total_steps=40,
        model_weights=model_weights,
        alpha=0.3,
        beta=0.25,
        sync_every=4,
        clip_norm=2.0,
        adaptive=True,
        convergence_window=3,
        convergence_update_every=2,
        max_convergence_scale=3.0,
        grouping=grouping,
    )
    kwargs.update(overrides)
    return mmojax.multi_model_optimizer(**kwargs)
