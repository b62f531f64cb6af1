"""Sensor data: message <-> numpy converters, camera models, time sync, frame history.

The converters (`image_conversion`, `camera_info`) are the only modules outside `nodes/` that touch
ROS message classes; they import them lazily so the rest of the package stays rclpy-free.
"""
