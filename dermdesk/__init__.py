"""dermdesk: a desktop workstation for clinical dermatology datasets."""

import os

__version__ = "0.1.0"

# ONNX Runtime writes a telemetry device id (~/.cache/Microsoft/DeveloperTools/.onnxruntime)
# as soon as it is imported, unless this is set first. dermdesk runs offline and keeps
# clinic data in the clinic: every entry point (CLI, GUI, spawned job workers, which
# inherit the environment) imports this package before onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
