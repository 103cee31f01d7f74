"""Grafana dashboards of the patrol verification project, as code.

Built with grafana-foundation-sdk; :mod:`patrol_dashboards.build` renders them to
the JSON files under ``dashboards/json/`` that Grafana's file provider loads
(``dashboards/provisioning/``). ``python dashboards/generate.py`` rewrites them,
``--check`` fails when the committed files differ from what the code builds.
"""
