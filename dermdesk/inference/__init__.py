"""ONNX Runtime predictor (numpy + onnxruntime only; never imports torch)."""
