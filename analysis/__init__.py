"""Analysis: model families that turn an analysis dataset into an ``Estimate``.

Every engine fills the same :class:`analysis.estimate.Estimate`; nothing here reads a protocol.
"""

from analysis.estimate import Estimate, PosteriorProbability

__all__ = ["Estimate", "PosteriorProbability"]
