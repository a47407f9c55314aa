"""Pictures for people: CT display windows and PNG previews (``windows.py``), per-patient axial
and coronal views of a prediction (``ct_views.py``), the lung base with lung outlines and the
diaphragm error plot (``geometry_views.py``), the test run's results pages (``results_page.py``,
``patient_page.py``, with ``score_tables.py`` and ``html_parts.py``), training curves
(``curves.py``) and the training run's page and logs (``visualizer.py``). Everything here is
8-bit or plotted, for looking at; HU stay in the NIfTI outputs and in ``evaluation/``. Imports
``util/`` only."""
