"""mmojax: joint training of several transformer models with JAX and Optax.

The optimizer layer (``mmojax.optim``; everything importable from ``mmojax``
itself) depends only on jax, numpy and optax: ``import mmojax`` loads no
flax, transformers, orbax or matplotlib. Models, data and training live in
the subpackages ``mmojax.models``, ``mmojax.data`` and ``mmojax.train``.
"""

from mmojax.optim import *  # noqa: F403  (every public name of the optimizer layer)
from mmojax.optim import __all__ as __all__

__version__ = "0.1.0"
