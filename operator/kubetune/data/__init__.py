"""Dataset formats, detection, validation and conversion to TRL records: the one place data rules live.

Standard library only: the operator image imports this without torch, transformers or datasets.

    report = validate_file("train.jsonl")          # format="auto" detects it from the keys
    print(report.render()); report.ok
    records = iter_trl_records("train.jsonl", report.format)   # what the TRL trainers take
"""

from kubetune.data.errors import DatasetError, LineError
from kubetune.data.formats import (
    AUTO,
    CHAT,
    DATA_FORMATS,
    FORMATS,
    PREFERENCE,
    PROMPT_COMPLETION,
    REINFORCEMENT,
    TEXT,
    detect_record_format,
    has_answer,
    is_conversational,
    to_trl_record,
)
from kubetune.data.jsonl import iter_jsonl
from kubetune.data.methods import METHOD_FORMATS, DataNeeds, data_needs, needs_of
from kubetune.data.report import ValidationReport, data_status
from kubetune.data.stats import CHARS_PER_TOKEN, estimate_tokens
from kubetune.data.validate import (
    LONG_EXAMPLE_CHARS,
    MAX_ERRORS,
    MIN_EXAMPLES,
    LineChecker,
    iter_trl_records,
    validate_file,
)

__all__ = [
    "AUTO",
    "CHARS_PER_TOKEN",
    "CHAT",
    "DATA_FORMATS",
    "FORMATS",
    "LONG_EXAMPLE_CHARS",
    "MAX_ERRORS",
    "METHOD_FORMATS",
    "MIN_EXAMPLES",
    "PREFERENCE",
    "PROMPT_COMPLETION",
    "REINFORCEMENT",
    "TEXT",
    "DataNeeds",
    "DatasetError",
    "LineChecker",
    "LineError",
    "ValidationReport",
    "data_needs",
    "data_status",
    "detect_record_format",
    "estimate_tokens",
    "has_answer",
    "is_conversational",
    "iter_jsonl",
    "iter_trl_records",
    "needs_of",
    "to_trl_record",
    "validate_file",
]
