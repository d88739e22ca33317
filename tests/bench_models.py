"""Tiny real model files for the benchmark tests (ONNX via torch.onnx, TFLite via TFLiteConverter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def make_onnx(path: Path) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    m = TinyNet().eval()
    torch.onnx.export(m, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    return path, m


def make_tflite(path: Path) -> tuple[Path, object]:
    """A small conv net as .tflite; returns the tf.function too (the oracle for the runner's output)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w = tf.constant(rng.standard_normal((3, 3, 3, 8)).astype(np.float32))
    d = tf.constant(rng.standard_normal((8, 5)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def f(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w, strides=1, padding="SAME"))
        return tf.matmul(tf.reduce_mean(y, axis=[1, 2]), d)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    path.write_bytes(conv.convert())
    return path, f
