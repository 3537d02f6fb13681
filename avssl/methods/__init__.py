"""Pretraining methods, one module each behind one small interface (`avssl.methods.base.Method`),
e.g. avid.py (AVID: memory-bank NCE / InfoNCE, cross / self / joint instance discrimination) and
cma.py (Cross-Modal Agreement: AVID + within-modal discrimination of agreed positives);
`available_methods()` lists them all.

    from avssl.methods import build_method, available_methods
    method = build_method(cfg, num_items, fingerprint)    # cfg["method"] names it

Loss terms any method can add (the localization term) live in terms.py; the registry discovers
every module of this package, so a new method is one new module (registry.py)."""

from avssl.methods.base import Method, ModelOutputs, Term, checkpoint_method
from avssl.methods.registry import available_methods, build_method, get_method, method_name
from avssl.methods.terms import LocalizationTerm, terms_from_config
from avssl.methods.avid import AVIDCriterion, AVIDMethod  # noqa: E402  (after base: registers itself)
from avssl.methods.cma import CMACriterion, CMAMethod  # noqa: E402

__all__ = ["Method", "ModelOutputs", "Term", "checkpoint_method", "available_methods", "build_method", "get_method",
           "method_name", "LocalizationTerm", "terms_from_config", "AVIDCriterion", "AVIDMethod", "CMACriterion",
           "CMAMethod"]
