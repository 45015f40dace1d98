"""vision_jax.evaluation."""
