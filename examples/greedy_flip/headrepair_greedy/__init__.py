"""headrepair-example-greedy: an example strategy plug-in for headrepair.

The entry point ``greedy-flip = "headrepair_greedy:GreedyFlip"`` (group
``headrepair.strategies`` in ``pyproject.toml``) registers :class:`GreedyFlip`.
"""

from headrepair_greedy.strategy import GreedyFlip

__all__ = ["GreedyFlip"]
