"""Safety logic: limits, watchdogs, e-stop, obstacle stop (pure logic; the node is in nodes/)."""
