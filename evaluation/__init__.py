"""Scoring predictions: metrics in HU per region (``metrics.py``) and reports over patients
(``report.py``). Pure numbers, no pictures; imports ``util/`` only."""
