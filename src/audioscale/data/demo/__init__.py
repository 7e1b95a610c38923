"""The real-audio demo corpus (the builder lives in ``build``; split by concern next)."""

from audioscale.data.demo.build import *  # noqa: F403
from audioscale.data.demo.build import (  # noqa: F401
    _assign_equal,
    _assign_sized,
    _phrase,
    _sfx_group,
    _split_counts,
)
