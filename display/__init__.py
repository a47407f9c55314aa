"""Pictures for people: CT display windows and PNG previews (``windows.py``), per-patient axial
and coronal views of a prediction (``ct_views.py``), training curves (``curves.py``) and the
training run's page and logs (``visualizer.py``). Everything here is 8-bit or plotted, for looking
at; HU stay in the NIfTI outputs and in ``evaluation/``. Imports ``util/`` only."""
