"""The training application around the plugin: recipes in, trained runs and reports out.

* :mod:`sj_ext.app.schema`, :mod:`sj_ext.app.recipe` -- YAML recipes: keys, types and
  defaults (torch-free), then names -> objects through the plugin's registries
* :mod:`sj_ext.app.data`, :mod:`sj_ext.app.optim` -- the datasets, optimizers and schedules
  a recipe names
* :mod:`sj_ext.app.engine` -- build, train and evaluate a run; its folder, checkpoints,
  resume, signals, distributed training
* :mod:`sj_ext.app.monitor`, :mod:`sj_ext.app.energy`, :mod:`sj_ext.app.report` -- what
  the methods do inside a run
* :mod:`sj_ext.app.sweep`, :mod:`sj_ext.app.compare` -- grids of recipes x seeds and their
  paired differences
* :mod:`sj_ext.app.cli` -- the ``sj-ext`` command

The plugin (:mod:`sj_ext`) never imports this package (``tests/test_layers.py``).
"""
