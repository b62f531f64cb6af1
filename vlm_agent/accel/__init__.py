"""Vision-encoder backends (PyTorch, ONNX Runtime, TensorRT) and export/engine build (no ROS)."""
