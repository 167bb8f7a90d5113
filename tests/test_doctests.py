"""The optimizer layer's docstring examples run as tests (they are its documentation)."""

import doctest
import importlib
import pkgutil

import pytest

import mmojax.optim

MODULES = sorted(
    f"mmojax.optim.{info.name}" for info in pkgutil.iter_modules(mmojax.optim.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_optimizer_modules_have_examples():
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted for n in MODULES)
    assert attempted >= 15
