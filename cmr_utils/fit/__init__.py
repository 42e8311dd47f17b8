"""The models of the shared space by the names parameters give them: a new model is one class and one line here."""
import inspect

from cmr_utils.fit.contrastive import ContrastiveCCA
from cmr_utils.fit.kernel import KernelCCA, Mapped
from cmr_utils.fit.linear import CCA, ExactCCA, RidgeCCA
from cmr_utils.fit.space import Space

MODELS = {"cca": CCA, "ridge": RidgeCCA, "exact": ExactCCA, "kernel": KernelCCA, "contrastive": ContrastiveCCA}


def make(model: str, **settings) -> Space:
    """An unfitted ``MODELS[model]`` with those of ``settings`` that its ``__init__`` declares (it ignores the rest)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: the models are {', '.join(MODELS)}")
    cls = MODELS[model]
    return cls(**{k: v for k, v in settings.items() if k in inspect.signature(cls).parameters})


def params_of(est: Space) -> dict:
    """What rebuilds ``est`` with ``make(**params_of(est))``: its registry name (``model``) and its ``get_params()``."""
    return {"model": next(name for name, cls in MODELS.items() if type(est) is cls), **est.get_params()}


def fit_shared(est: Space, X, Y, moments=None, mapped: Mapped | None = None) -> Space:
    """``est`` fitted on the pairs X, Y from what the models of a sweep share, when given: ``moments()`` (the
    pairs' ``Moments``) for a model solved from moments, ``mapped`` for a kernel model's maps."""
    if moments is not None and est.from_moments:
        return est.fit_moments(moments())
    if mapped is not None and isinstance(est, KernelCCA):
        return est.fit_mapped(mapped(est))
    return est.fit(X, Y)
