"""vision_jax.ops: functional detection and segmentation ops in plain JAX."""
