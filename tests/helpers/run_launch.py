"""Run a launch file with ROS 2's own launch engine, as `ros2 launch` does (ros2cli has no wheel).

    python -m tests.helpers.run_launch LAUNCH_FILE [name:=value ...]

Exit code: LaunchService.run()'s. SIGINT/SIGTERM go to the launch service, which forwards SIGINT
to every process it started and escalates to SIGTERM/SIGKILL after its timeouts, like `ros2 launch`.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path, *rest = argv
    arguments = [tuple(a.split(":=", 1)) for a in rest if ":=" in a]
    service = LaunchService(argv=rest)
    service.include_launch_description(
        LaunchDescription([IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=arguments)])
    )
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
