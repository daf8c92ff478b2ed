"""Fisher information, the primitives behind scheduled unfreezing, the Fisher tracker and guided dropout
(docs/methods.md §0, §4, §6).

* :mod:`.units`: the diagonal Fisher and tr(F) per unit (embeddings, each block, each adapter) of the
  task loss, from fixed batches (:func:`fisher_diagonal`, :func:`fisher_trace`, :func:`find_units`);
* :mod:`.sublayer`: per-sublayer scores of a pretraining-style loss for guided dropout
  (:func:`sublayer_scores`, :func:`dropout_sites`), cached per backbone.
"""

from .sublayer import (
    SOURCES,
    DropoutSite,
    GuidanceError,
    SublayerScores,
    backbone_id,
    cache_dir,
    dropout_sites,
    sublayer_scores,
)
from .units import LABEL_MODES, FisherError, find_units, fisher_diagonal, fisher_trace

__all__ = ["LABEL_MODES", "FisherError", "find_units", "fisher_diagonal", "fisher_trace", "SOURCES", "DropoutSite",
           "GuidanceError", "SublayerScores", "backbone_id", "cache_dir", "dropout_sites", "sublayer_scores"]
