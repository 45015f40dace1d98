"""vision_jax.models.backbones."""
