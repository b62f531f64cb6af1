"""Safety logic: limits, watchdogs, e-stop, obstacle stop (pure logic; the node is in nodes/).

- `supervisor`: `SafetySupervisor` / `SafetyConfig`, the gate every velocity command passes.
- `freshness`: `StreamMonitor`, sensor freshness from header stamps on one clock.
- `obstacle`: `ObstacleStop`, the footprint swept along the command against depth points in base_link.
- `params`: `check_runtime_change`, which parameters may change while gating, and in which direction.
- `estop`: `EstopLatchFile`, the e-stop state across restarts.
"""
