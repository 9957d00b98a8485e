"""The masked-LLM objective layer: models, head masking, bias and utility metrics, data, the ``masked-lm`` problem.

Importing the package is cheap; the submodules pull in torch and transformers.
"""

__all__ = ["MaskedLMProblem"]


def __getattr__(name: str):
    if name == "MaskedLMProblem":
        from objectives.masked_lm.problem import MaskedLMProblem

        return MaskedLMProblem
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
