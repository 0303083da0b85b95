"""Ferry's pure core: the feature repo, value types, key and row codecs, the as-of rule.

Nothing here touches the network or an event loop; stored bytes are defined here.
"""

from ferry.core.asof import NO_MATCH, as_of, latest_per_key
from ferry.core.codec import NO_CREATED_TIMESTAMP, DecodedRow, RowCodec
from ferry.core.errors import (
    FerryError,
    InvalidValueError,
    MaterializationError,
    Problem,
    RepoError,
    SourceError,
    StoreError,
    StoreUnavailableError,
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownFeatureViewError,
    UnknownReferenceError,
)
from ferry.core.keys import decode_key, encode_key, encode_key_columns
from ferry.core.repo import (
    Entity,
    Feature,
    FeatureRef,
    FeatureRepo,
    FeatureService,
    FeatureView,
    JoinKey,
    Source,
)
from ferry.core.repo_file import load_repo, parse_repo
from ferry.core.types import ValueType

__all__ = [
    "NO_CREATED_TIMESTAMP",
    "NO_MATCH",
    "DecodedRow",
    "Entity",
    "Feature",
    "FeatureRef",
    "FeatureRepo",
    "FeatureService",
    "FeatureView",
    "FerryError",
    "InvalidValueError",
    "JoinKey",
    "MaterializationError",
    "Problem",
    "RepoError",
    "RowCodec",
    "Source",
    "SourceError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownFeatureError",
    "UnknownFeatureServiceError",
    "UnknownFeatureViewError",
    "UnknownReferenceError",
    "ValueType",
    "as_of",
    "decode_key",
    "encode_key",
    "encode_key_columns",
    "latest_per_key",
    "load_repo",
    "parse_repo",
]
