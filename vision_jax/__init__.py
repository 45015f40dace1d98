"""vision_jax: JAX/Flax research code for the core tasks of computer vision."""

__version__ = "0.1.0"
