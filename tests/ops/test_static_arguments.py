"""Issue 15, item 9: every op's docstring names exactly the arguments that must be static under jit.

For each public op (but the post-processor, being rewritten elsewhere) one valid call (static_cases.py)
is jitted with each non-array argument traced in turn, the others closed over: the arguments whose
tracing fails must be those of the docstring's "Static under jit: ..." line, and with just those
static, the jitted op must give the eager result. Ops marked "every argument" are the NumPy builders.
"""
from __future__ import annotations

import functools
import inspect
import re

import jax
import numpy as np
import pytest

import vision_jax.ops as vops
from static_cases import cases

NOT_COVERED: set[str] = set()
_STATIC_LINE = re.compile(r"Static under jit: ([^.;(]*)")


@pytest.fixture(scope="module")
def all_cases():
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"static_cases seed={seed}")
    return cases(np.random.default_rng(seed))


def documented_static(op) -> set[str] | str:
    """The names of the "Static under jit:" line, "every" for "every argument", or an empty set."""
    found = _STATIC_LINE.search(" ".join(inspect.getdoc(op).split()))
    if found is None:
        return set()
    if found.group(1).startswith("every argument"):
        return "every"
    return set(re.findall(r"`(\w+)`", found.group(1)))


def split_arguments(kwargs: dict) -> tuple[dict, dict]:
    """(array arguments, the others: the candidates for static)."""
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, (np.ndarray, jax.Array))}
    return arrays, {k: v for k, v in kwargs.items() if k not in arrays}


def jitted(op, static: dict):
    return jax.jit(functools.partial(op, **static))


def test_every_public_op_has_a_case(all_cases):
    assert set(all_cases) == set(vops.__all__) - NOT_COVERED


@pytest.mark.parametrize("name", sorted(set(vops.__all__) - NOT_COVERED))
def test_docstring_names_the_arguments_that_must_be_static(name, all_cases):
    op, kwargs = getattr(vops, name), all_cases[name]
    documented = documented_static(op)
    arrays, others = split_arguments(kwargs)
    if documented == "every":  # a NumPy builder: it needs concrete values for its arguments
        with pytest.raises(Exception):
            jax.jit(op)(**kwargs)
        return
    parameters = set(inspect.signature(op).parameters)
    assert documented <= parameters, f"{name}: documents {documented - parameters}, which are not its arguments"
    assert not documented & set(arrays), f"{name}: documents {documented & set(arrays)}, which the case passes as arrays"
    documented &= set(others)  # the case may leave out optional static arguments (e.g. topk_per_class)
    must_be_static = set()
    for candidate in others:
        static = {k: v for k, v in others.items() if k != candidate}
        try:
            jitted(op, static)(**arrays, **{candidate: others[candidate]})
        except Exception:  # noqa: BLE001 - any failure means it cannot be traced
            must_be_static.add(candidate)
    assert must_be_static == documented, f"{name}: must be static {sorted(must_be_static)}, documented {sorted(documented)}"
    # With the documented ones static, everything else may be traced and the result is the eager one.
    static = {k: others[k] for k in documented}
    traced = {k: v for k, v in others.items() if k not in documented}
    result = jitted(op, static)(**arrays, **traced)
    expected = op(**kwargs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5), result, expected)
