"""Inference with a trained run: the one pipeline behind ``test.py`` and ``scripts/predict.py``.

- :mod:`inference.pipeline`: the shared flow. :func:`~inference.pipeline.load_pipeline` loads a
  run (:class:`~inference.pipeline.RunChoice`) for given
  :class:`~inference.pipeline.PredictSettings` and refuses what it cannot do; the pipeline
  predicts a patient (phase 0, and the cycle when asked) and writes every output where an
  :class:`~inference.pipeline.OutputPaths` says. The refusals of DICOM output live here.
- Layouts, the only thing the two entry points do differently:
  :mod:`inference.results_folder` (``test.py``: a results folder per run, earlier runs' outputs
  removed) and :mod:`inference.single_volume` (``scripts/predict.py``: files beside ``--output``).
- ``test.py``'s own work: :mod:`inference.dataset_split` (a split's patients, truths and
  scores) and :mod:`inference.pictures` (the pictures of the patient pages).

Dependencies: models, data, evaluation, display and util; entry points import this package,
never the reverse. Settings arrive as frozen values, never as the parsed command line.
"""
