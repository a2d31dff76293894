"""Evaluation shared by ``finetune``, ``featurebaseline`` and ``experiments``: metrics
(``metrics``), bootstrap resampling and paired tests (``resampling``) and the run-folder format
with its fingerprints (``runs``). It depends on none of them."""
