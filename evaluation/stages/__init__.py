"""The judge's stages after prediction, criteria and relaxation: one module each (see :mod:`.base`)."""

from .base import BUILT_IN, Column, Stage, StageInput, StageUnavailable
from .registry import (
    caption_sentences,
    columns,
    distinct_compositions,
    distinct_flags,
    funnel_steps,
    get_stage,
    identity,
    rate_columns,
    relaxed_keys,
    run_stages,
    stages,
    subset_units,
    summarise,
    table_columns,
)

__all__ = ["BUILT_IN", "Column", "Stage", "StageInput", "StageUnavailable", "caption_sentences", "columns",
           "distinct_compositions", "distinct_flags", "funnel_steps", "get_stage", "identity", "rate_columns", "relaxed_keys",
           "run_stages", "stages", "subset_units", "summarise", "table_columns"]
