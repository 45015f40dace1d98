"""The ops package is importable on its own: jax, jax.numpy and numpy only, and nothing of
vision_jax.models (the arrow points from models to ops, never back)."""

import subprocess
import sys


def test_ops_import_only_jax_and_numpy():
    code = (
        "import sys; import vision_jax.ops as vops; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'tensorflow', 'optax', 'torch', 'tensorflow_datasets') "
        "or m.startswith(('vision_jax.models', 'vision_jax.tasks', 'vision_jax.train', 'vision_jax.data'))); "
        "print(','.join(bad)); print(len(vops.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "", f"vision_jax.ops pulled in {out[0]}"
    assert int(out[1]) >= 40


def test_public_names_resolve_to_functions():
    import vision_jax.ops as vops

    for name in vops.__all__:
        assert callable(getattr(vops, name)), name
