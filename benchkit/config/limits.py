"""What every config section shares: unknown keys and non-finite numbers refused, seeds and sizes bounded."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A config section: unknown keys and inf/nan refused."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


SEED_LIMIT = 2 ** 32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_LIMIT, description="0 .. 2**32 - 1")]
"""A seed: what numpy, torch and Python's random all take."""
MAX_IMAGE_SIZE = 8192
MAX_BATCH = 65536
