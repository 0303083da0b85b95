"""ServingService's lookup responses, framed on the wire from encoded feature columns.

The lookups answer with bytes they write themselves (``ferry.wire.packed`` writes the
``FeatureColumn`` messages); this module puts those columns into the response messages.
Field numbers come from the generated descriptors, so a change of ``serving.proto`` cannot
silently desync the framing; tests parse the output with the generated classes.
"""

from __future__ import annotations

from ferry.api.serving.v1 import serving_pb2
from ferry.wire.packed import field_number, int_field, message_field, repeated_message

_ONLINE = serving_pb2.GetOnlineFeaturesResponse.DESCRIPTOR
_MODEL = serving_pb2.GetModelFeaturesResponse.DESCRIPTOR
_STREAM = serving_pb2.StreamOnlineFeaturesResponse.DESCRIPTOR
_ONLINE_FEATURES = field_number(_ONLINE, "features")
_ONLINE_ROW_COUNT = field_number(_ONLINE, "row_count")
_MODEL_VERSION = field_number(_MODEL, "model_version")
_MODEL_FEATURES = field_number(_MODEL, "features")
_MODEL_ROW_COUNT = field_number(_MODEL, "row_count")
_STREAM_FEATURES = field_number(_STREAM, "features")
_STREAM_ERROR = field_number(_STREAM, "error")


def online_features_response(rows: int, columns: list[bytes]) -> bytes:
    """An encoded GetOnlineFeaturesResponse of ``rows`` entity rows and encoded columns."""
    return repeated_message(_ONLINE_FEATURES, columns) + int_field(_ONLINE_ROW_COUNT, rows)


def stream_features_response(rows: int, columns: list[bytes]) -> bytes:
    """An encoded StreamOnlineFeaturesResponse carrying one lookup's features."""
    return message_field(_STREAM_FEATURES, online_features_response(rows, columns))


def stream_error_response(error: serving_pb2.LookupError) -> bytes:
    """An encoded StreamOnlineFeaturesResponse carrying one lookup's error."""
    return message_field(_STREAM_ERROR, error.SerializeToString())


def model_features_response(model_version: bytes, rows: int, columns: list[bytes]) -> bytes:
    """An encoded GetModelFeaturesResponse: the encoded ModelVersion, then the features."""
    return (
        message_field(_MODEL_VERSION, model_version)
        + repeated_message(_MODEL_FEATURES, columns)
        + int_field(_MODEL_ROW_COUNT, rows)
    )
