"""ExecuTorch runner for ``.pte`` files: the pybind runtime (``executorch.runtime``), XNNPACK, N threads.

The runtime's global thread pool starts with one thread per CPU it counts, not per CPU the
process is pinned to (stack.md: 2 threads on a process pinned to one core, the second one
competing with the measuring thread). ``portable_lib._unsafe_reset_threadpool(threads)`` (a
private API) resizes it before the program is loaded; ``info()`` reports the count asked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.bench.base import Runner, random_input
from edgecv.errors import UserError


class ExecuTorchRunner(Runner):
    name = "executorch"
    formats = ("executorch",)

    def import_runtime(self) -> None:
        if self.device != "cpu":
            raise UserError("the ExecuTorch runner runs on the CPU (XNNPACK); use --device cpu")
        try:
            import torch
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime
        except ImportError:
            raise UserError("executorch is not installed: pip install 'edgecv[executorch]'") from None
        if not Path(self.source).is_file():
            raise UserError(f"ExecuTorch file {self.source} not found")
        self._torch, self._runtime = torch, Runtime
        portable_lib._unsafe_reset_threadpool(int(self.threads))  # before any program is loaded

    def load(self) -> None:
        self.program = self._runtime.get().load_program(Path(self.source))
        self.method = self.program.load_method("forward")

    def prepare_inputs(self) -> None:
        import numpy as np

        meta = self.method.metadata
        self.inputs, self.shapes = [], []
        for i in range(meta.num_inputs()):
            t = meta.input_tensor_meta(i)
            shape = tuple(int(d) for d in t.sizes())
            dtype = {6: np.float32, 1: np.int8, 0: np.uint8, 3: np.int32, 4: np.int64}.get(int(t.dtype()), np.float32)
            x = random_input(shape, dtype, self.seed + i)
            self.inputs.append(self._torch.from_numpy(x))
            self.shapes.append((list(shape), str(x.dtype)))

    def infer(self) -> Any:
        return self.method.execute(self.inputs)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"executorch": version("executorch")}
        except PackageNotFoundError:
            return {}

    def info(self) -> dict[str, Any]:
        meta = self.method.metadata
        backends = sorted({meta.backend_name(i) for i in range(meta.num_backends())}) if hasattr(meta, "num_backends") else []
        return {"inputs": self.shapes, "threadpool_threads": self.threads, "backends": backends}
