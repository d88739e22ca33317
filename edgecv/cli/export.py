"""`edgecv export`: ONNX and TFLite files checked against PyTorch (filled in by the export work)."""
