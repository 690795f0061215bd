"""Model metadata: the model card, where it comes from, and how it rides in the artifact.

- :mod:`.card`      the ModelCard pydantic model (strict; JSON Schema ``model-card.schema.json``)
- :mod:`.sources`   card file, push flags, git / environment detection, merging
- :mod:`.encoding`  card <-> ModelPack config fields + ``dev.ocimodel.*`` annotations
- :mod:`.diff`      metric deltas and license changes between two cards"""

from ocimodel.metadata.card import (
    RELATIONS,
    BaseModelRef,
    Code,
    Dataset,
    Environment,
    MetricValue,
    ModelCard,
    check_spdx_expression,
    has_credentials,
    metric_value,
    validate_card,
)
from ocimodel.metadata.encoding import (
    CARD_ANNOTATIONS,
    DecodedCard,
    EncodedCard,
    decode_card,
    encode_card,
    read_card,
    unknown_annotations,
)
from ocimodel.metadata.sources import (
    CARD_FILENAMES,
    KEY_PACKAGES,
    MetadataFlags,
    collect_card,
    detect_code,
    detect_environment,
    find_card_file,
    load_card_file,
    merge_cards,
    parse_flag_args,
    parse_flags,
    redact_url,
)

__all__ = [
    "CARD_ANNOTATIONS",
    "CARD_FILENAMES",
    "KEY_PACKAGES",
    "RELATIONS",
    "BaseModelRef",
    "CardDelta",
    "Code",
    "Dataset",
    "DecodedCard",
    "EncodedCard",
    "Environment",
    "LicenseChange",
    "MetadataFlags",
    "MetricDelta",
    "MetricValue",
    "ModelCard",
    "ParamChange",
    "card_deltas",
    "check_spdx_expression",
    "collect_card",
    "decode_card",
    "detect_code",
    "detect_environment",
    "encode_card",
    "find_card_file",
    "has_credentials",
    "load_card_file",
    "merge_cards",
    "metric_value",
    "parse_flag_args",
    "parse_flags",
    "read_card",
    "redact_url",
    "unknown_annotations",
    "validate_card",
]

# Loaded on first use: a push imports this package for the card and never compares two.
_DIFF_NAMES = ("CardDelta", "LicenseChange", "MetricDelta", "ParamChange", "card_deltas")


def __getattr__(name: str) -> object:
    if name in _DIFF_NAMES:
        from ocimodel.metadata import diff

        return getattr(diff, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
