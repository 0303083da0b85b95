"""The serving flow: ServingService over an online store.

A request's feature selection becomes a ``FeaturePlan`` (``Catalog``), its entity columns
online keys (``parse_entities``), one store read (``read_features``, through the
``NaturalBatcher`` when enabled) and encoded response columns; pushes go through the one
ingest path (``ferry.core.ingest``) to the store's conditional writer.
"""

from ferry.server.serving.batcher import NaturalBatcher
from ferry.server.serving.catalog import Catalog, FeaturePlan, ViewSlot
from ferry.server.serving.entities import parse_entities
from ferry.server.serving.reads import (
    SMALL_BLOCK,
    encode_slot,
    encode_slot_arrays,
    encode_slot_values,
    read_features,
)
from ferry.server.serving.serving_service import (
    SERVING_SERVICE,
    Limits,
    ServingService,
    add_to_server,
)
from ferry.stores.base import Reader

__all__ = [
    "SERVING_SERVICE",
    "SMALL_BLOCK",
    "Catalog",
    "FeaturePlan",
    "Limits",
    "NaturalBatcher",
    "Reader",
    "ServingService",
    "ViewSlot",
    "add_to_server",
    "encode_slot",
    "encode_slot_arrays",
    "encode_slot_values",
    "parse_entities",
    "read_features",
]
