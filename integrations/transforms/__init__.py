"""Kafka Connect's single message transforms, vectorised over Arrow batches.

Use :func:`build_chain` on a connector config; see ``docs/transforms.md`` for every transform.
"""

from integrations.transforms.batch import PRIMITIVE_COLUMN, Batch, is_primitive, primitive
from integrations.transforms.chain import TransformChain, build_chain
from integrations.transforms.errors import TransformError

__all__ = ["PRIMITIVE_COLUMN", "Batch", "TransformChain", "TransformError", "build_chain", "is_primitive",
           "primitive"]
