#!/usr/bin/env bash
# Source ROS 2 and the vlm_agent workspace, report the accelerator, then run the command
# (default: ros2 launch vlm_agent robot.launch.py).
set -euo pipefail
source "/opt/ros/${ROS_DISTRO:-humble}/setup.bash"
source /ws/install/setup.bash
mkdir -p "${HOME}/.cache/vlm_agent/engines"
python3 - <<'PY' || true
import torch, onnxruntime as ort
try:
    import tensorrt as trt
    trt_version = trt.__version__
except Exception as exc:  # the node will fall back to onnxruntime and log why
    trt_version = f"unavailable ({exc})"
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"[vlm_agent] GPU: {gpu}; TensorRT {trt_version}; onnxruntime providers {ort.get_available_providers()}", flush=True)
PY
exec "$@"
