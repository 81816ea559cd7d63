"""Grafana dashboards as code.

:mod:`grafana.boards` defines the dashboards with the Grafana Foundation SDK; ``python -m grafana``
writes them to ``grafana/dashboards/*.json``, which Grafana loads through
``grafana/provisioning/``. Edit the code, regenerate, commit both: a test fails when the committed
JSON differs from what the code generates.
"""
