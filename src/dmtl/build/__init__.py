"""Build: the one place below the command line where a config becomes objects and is
checked as a whole.

- :mod:`dmtl.build.model`: the factories (:func:`build_model`, :func:`build_objective`,
  :func:`build_loss_weighting`, :func:`build_gradient_aggregator`, :func:`build_guard`)
  and :class:`ModelSpec`, what a checkpoint stores besides the weights;
- :mod:`dmtl.build.check`: :func:`check_config`, everything checkable before any data
  loads (names and options through :mod:`dmtl.registry`, files, ``module:factory``
  imports, monitor names, the study's variants), what ``dmtl config check``,
  ``dmtl train`` and ``dmtl study`` run first;
- :mod:`dmtl.build.data`: config -> sources and the :class:`Experiment` of one seed
  (:func:`build_experiment`: load, split, hide labels, group into strata, relate);
- :mod:`dmtl.build.transforms`: a source's ``input`` section -> its transforms, and the
  inputs a pretrained backbone asks for (:func:`resolve_inputs`);
- :mod:`dmtl.build.edges`: the ``relatedness`` list -> the plain edge specs
  :mod:`dmtl.knowledge.edges` builds tables from;
- :mod:`dmtl.build.loaders`: the ``trainer`` section -> an experiment's data loaders.

Below this package (``dmtl.core``, ``dmtl.backbones``, ``dmtl.knowledge``, ``dmtl.data``)
nothing imports :mod:`dmtl.config`: those take plain arguments and built objects
(``tests/test_architecture.py`` checks it). A run validates its config once (when the
command line reads it) and passes the object down.

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
    **dict.fromkeys(
        ["Experiment", "LoadedSource", "build_experiment", "experiment_warnings",
         "load_sources"],
        "dmtl.build.data",
    ),
    **dict.fromkeys(["eval_loader", "train_loader"], "dmtl.build.loaders"),
    "edge_specs": "dmtl.build.edges",
    "resolve_inputs": "dmtl.build.transforms",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
