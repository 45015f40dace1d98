"""vision_jax.tasks."""
