"""Watching a model's measured performance over time: rules over evaluation records
(``rules``), the policy's evaluation rule (``policy``), webhook alerts with a state file
(``alerts``) and the Prometheus text exposition (``prometheus``).

Beside ``trust/`` and ``scanning/``: it imports neither ``api`` nor ``cli``; the API
(``api/evaluation_checks.py``) reads the records and hands them here."""
