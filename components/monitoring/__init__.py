"""The monitoring stack's parts, by responsibility; the component is ``MonitoringStack``.

* ``args``: the typed stack config (``monitoring`` section) and its validation;
* ``alerting``: Alertmanager's routing, receivers and the SNS publishing policy;
* ``assets``: rule files and dashboards, loaded from ``components/assets`` and wrapped as objects;
* ``prometheus``: kube-prometheus-stack's values, its storage class and network policies;
* ``exporters``: the DCGM exporter's field list and values.
"""
