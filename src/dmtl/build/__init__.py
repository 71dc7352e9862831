"""Build: the one place below the command line where a config becomes objects and is
checked as a whole.

- :mod:`dmtl.build.model`: the factories (:func:`build_model`, :func:`build_objective`,
  :func:`build_loss_weighting`, :func:`build_gradient_aggregator`, :func:`build_guard`)
  and :class:`ModelSpec`, what a checkpoint stores besides the weights;
- :mod:`dmtl.build.check`: :func:`check_config`, everything checkable before any data
  loads (names and options through :mod:`dmtl.registry`, files, ``module:factory``
  imports, monitor names, the study's variants), what ``dmtl config check``,
  ``dmtl train`` and ``dmtl study`` run first.

Names are exported lazily, so that ``dmtl.build.check`` loads no torch.
"""

from __future__ import annotations

from dmtl._lazy import lazy_exports

_MODEL = "dmtl.build.model"
_CHECK = "dmtl.build.check"
_EXPORTS = {
    **dict.fromkeys(
        [
            "SPEC_FORMAT", "ModelSpec", "build_gradient_aggregator", "build_guard",
            "build_loss_weighting", "build_model", "build_objective", "edge_from_dict",
            "edge_to_dict",
        ],
        _MODEL,
    ),
    **dict.fromkeys(["check_config", "checked_config", "use_config_folder"], _CHECK),
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
