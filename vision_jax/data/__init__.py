"""vision_jax.data: datasets as canonical examples, transforms, and batch pipelines.

- datasets.py: `load(data_config, split, process_index=, process_count=)` and the name -> loader table.
- dataset_info.py: `DatasetInfo` and the canonical example's fields.
- shapes.py / shapes_builder.py: the generated shapes scenes (NumPy) and their local tfds builder.
- fashion_mnist_local.py, tfds_named.py, image_folder.py, mask_folder.py, coco_json.py: the other loaders.
- image_files.py: the JPEG/PNG files of a user's own data: checked cheaply at load time, decoded by
  tf.data with errors that name the file (data_errors.py: those errors, raised as DataFileError).
- small_data.py: batch sizes and warmup that a config's recipe sets too large for the data or the
  run, fitted (and logged) before the model is built.
- tfds_reading.py: a process's shard of a tfds split with global image ids.
- transforms.py: resize/flip/crop/pad of image, boxes and masks together (TensorFlow ops).
- pipeline.py: `train_batches` (shuffled, infinite, exactly resumable) and `eval_batches` (padded).
"""
