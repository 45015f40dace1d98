"""Errors raised inside tf.data that name the file at fault, and their translation to a plain ValueError.

An op that fails inside a tf.data pipeline reaches Python as `tf.errors.InvalidArgumentError` from the
iterator, its own text buried between TensorFlow's node names, and a decoder's text
(`Invalid PNG data`, `jpeg::Uncompress failed`) names no file. The loaders of a user's files therefore
fail with a message of their own that names the file (and the annotation's image id), wrapped between
two marks: in the graph with `graph_assert`, in a NumPy function by raising `marked(message)`.
`pipeline.train_batches` and `eval_batches` iterate through `named_errors`, which turns such a
TensorFlow error into `DataFileError` (a ValueError) carrying the message alone. Code that iterates a
loader's dataset directly gets TensorFlow's error, whose text still holds the marked message.
"""

from __future__ import annotations

import re
from typing import Iterator, TypeVar

import tensorflow as tf

MARK = "<<vision_jax data error>>"
_MARKED = re.compile(re.escape(MARK) + r"(.*?)" + re.escape(MARK), re.DOTALL)
T = TypeVar("T")


class DataFileError(ValueError):
    """A file of the dataset cannot be used; the message names it. Raised by the loaders' checks at
    load time (image_files.py) and by the pipelines when a file fails as it is read."""


def marked(message: str) -> str:
    """`message` between the marks, for an exception raised inside a tf.data NumPy function."""
    return f"{MARK}{message}{MARK}"


def graph_assert(condition: tf.Tensor, *message_parts) -> tf.Operation:
    """In a tf.data function: fails the pipeline with the message `"".join(message_parts)` (strings
    or string tensors, e.g. the example's path) when `condition` is False."""
    message = tf.strings.join([MARK, *message_parts, MARK])
    return tf.debugging.Assert(condition, [message], summarize=1)


def message_of(error: BaseException) -> str | None:
    """The marked message inside a TensorFlow error's text, or None when it holds none."""
    text = getattr(error, "message", None) or str(error)
    found = _MARKED.search(text)
    return found.group(1) if found else None


def named_errors(iterator: Iterator[T]) -> Iterator[T]:
    """Yields from `iterator`; a TensorFlow error holding a marked message is raised as
    DataFileError(that message), other errors unchanged."""
    try:
        yield from iterator
    except tf.errors.OpError as error:
        reraise(error)


def reraise(error: tf.errors.OpError):
    """Raises DataFileError(the marked message) when `error` holds one, else `error` itself."""
    message = message_of(error)
    if message is None:
        raise error
    raise DataFileError(message) from None
