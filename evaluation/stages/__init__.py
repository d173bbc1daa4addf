"""The judge's stages after prediction and criteria: robustness, relaxation, then the checks of a relaxed
proposal; one module each (see :mod:`.base`)."""

from .base import BUILT_IN, RELAXED_COUNT, RELAXED_ROWS, Column, Stage, StageInput, StageUnavailable, truthy
from .registry import (
    caption_sentences,
    columns,
    distinct_compositions,
    distinct_flags,
    funnel_steps,
    get_stage,
    headline,
    identity,
    notes_of,
    rate_columns,
    relaxed_keys,
    report_lines,
    run_stages,
    stages,
    subset_units,
    summarise,
    table_columns,
)

__all__ = ["BUILT_IN", "RELAXED_COUNT", "RELAXED_ROWS", "Column", "Stage", "StageInput", "StageUnavailable",
           "caption_sentences", "columns", "distinct_compositions", "distinct_flags", "funnel_steps", "get_stage",
           "headline", "identity", "notes_of", "rate_columns", "relaxed_keys", "report_lines", "run_stages", "stages",
           "subset_units", "summarise", "table_columns", "truthy"]
