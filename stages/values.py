"""The value ranges the stages declare in their signatures, checked before anything runs.

pydantic's vocabulary: the orchestrator (`pipeline.execution.constraints`) checks each
composed value against its parameter's annotation, so `train.lr=nan` is refused with its
key, its value and this range before any stage starts. Plain Python calls are not checked.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

#: A count of at least one (epochs, a batch size, threads, a layer width).
Count = Annotated[int, Field(ge=1)]
#: A count that may be zero (layers beyond the first).
Size = Annotated[int, Field(ge=0)]
#: A finite number above zero (a learning rate).
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: A finite number of at least zero (a weight decay).
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A fraction of a whole: from 0 up to, not including, 1 (a dropout, a split's share).
Fraction = Annotated[float, Field(ge=0, lt=1)]
#: Where torch computes: CUDA when available (`auto`), or one of them by name.
Device = Literal["auto", "cpu", "cuda"]
