"""vlm_agent: an embodied vision-language agent stack for ROS 2.

ROS stays at the edge: only `vlm_agent.nodes` and the CLI import rclpy. Everything else
(models, planners, skills, safety logic, the simulator, metrics) is plain Python.
See ARCHITECTURE.md at the repository root for the map.
"""

__version__ = "0.1.0"
