from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetFeaturesRequest(_message.Message):
    __slots__ = ("user_id", "item_ids", "retrieval_scores", "feature_service", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_SCORES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    retrieval_scores: _containers.RepeatedScalarFieldContainer[float]
    feature_service: str
    request_id: str
    def __init__(self, user_id: _Optional[str] = ..., item_ids: _Optional[_Iterable[str]] = ..., retrieval_scores: _Optional[_Iterable[float]] = ..., feature_service: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ("feature_names", "rows", "cols", "matrix", "missing_items", "user_missing", "feature_service")
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    MATRIX_FIELD_NUMBER: _ClassVar[int]
    MISSING_ITEMS_FIELD_NUMBER: _ClassVar[int]
    USER_MISSING_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    rows: int
    cols: int
    matrix: bytes
    missing_items: int
    user_missing: bool
    feature_service: str
    def __init__(self, feature_names: _Optional[_Iterable[str]] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., matrix: _Optional[bytes] = ..., missing_items: _Optional[int] = ..., user_missing: _Optional[bool] = ..., feature_service: _Optional[str] = ...) -> None: ...
