"""onnxruntime runner: CPU (intra=inter=threads, sequential) or the CUDA execution provider."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecv.bench.base import Runner, random_input
from edgecv.errors import UserError

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
           "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


class OrtRunner(Runner):
    name = "onnxruntime"
    formats = ("onnx",)

    def import_runtime(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("onnxruntime is not installed: pip install 'edgecv[onnx]'") from None
        self._ort = ort
        if not Path(self.source).is_file():
            raise UserError(f"ONNX file {self.source} not found")
        if self.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("device cuda asked for but this onnxruntime has no CUDAExecutionProvider "
                            "(pip install onnxruntime-gpu); use --device cpu")

    def load(self) -> None:
        ort = self._ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # keep ORT's own spinning threads from competing with the pinned measuring thread
        so.add_session_config_entry("session.intra_op.allow_spinning", "0" if self.threads == 1 else "1")
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda"
                     else ["CPUExecutionProvider"])
        self.sess = ort.InferenceSession(self.source, so, providers=providers)

    def prepare_inputs(self) -> None:
        self.feeds = {}
        for i, inp in enumerate(self.sess.get_inputs()):
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            if self.input_size and len(shape) == 4:
                shape = [1, *self.input_size[-3:]]
            dtype = _DTYPES.get(inp.type)
            if dtype is None:
                raise UserError(f"input {inp.name} has type {inp.type}, which edgecv bench cannot fill")
            self.feeds[inp.name] = random_input(tuple(shape), dtype, self.seed + i)
        self.outputs = [o.name for o in self.sess.get_outputs()]

    def infer(self) -> Any:
        # with the CUDA provider, run() copies outputs back to host memory, which synchronises
        return self.sess.run(self.outputs, self.feeds)

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    def info(self) -> dict[str, Any]:
        return {"providers": self.sess.get_providers(),
                "inputs": {k: [list(v.shape), str(v.dtype)] for k, v in self.feeds.items()}}
