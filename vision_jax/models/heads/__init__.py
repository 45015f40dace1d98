"""vision_jax.models.heads."""
