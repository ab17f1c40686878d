"""Operations: what an operator's engineer expects on day one (issue 19).

systemd readiness and watchdog (:mod:`~bridge.ops.systemd`), log format and context (:mod:`~bridge.ops.logs`),
Prometheus metrics (:mod:`~bridge.ops.metrics`), alarms (:mod:`~bridge.ops.alarms`), the engine's hooks into
all of them (:mod:`~bridge.ops.runtime`), ``bridge doctor`` (:mod:`~bridge.ops.doctor`), ``bridge backup`` /
``restore`` (:mod:`~bridge.ops.backup`) and ``bridge demo run`` (:mod:`~bridge.ops.demo`).
"""
