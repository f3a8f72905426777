"""Seeds derived from several integers (a run's seed, an epoch, a rank, a stream), for the generators
that must differ per epoch or rank and still repeat on resume. numpy's SeedSequence mixes the parts, so
nearby tuples, such as (0, 1) and (1, 0), give unrelated streams."""
from __future__ import annotations

import numpy as np
import torch


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from `parts` (non-negative integers), the same on every machine. Give each use a fixed
    number of parts: trailing zeros add nothing to a SeedSequence, so (1, 0) and (1,) give the same seed."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def derived_generator(*parts: int) -> torch.Generator:
    """A CPU torch.Generator seeded with derived_seed(*parts)."""
    return torch.Generator().manual_seed(derived_seed(*parts))
