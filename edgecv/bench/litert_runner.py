"""LiteRT (ai-edge-litert) runner: XNNPACK delegate (applied by the default op resolver), N threads."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.bench.base import Runner, random_input
from edgecv.errors import UserError


class LiteRTRunner(Runner):
    name = "litert"
    formats = ("tflite",)

    def import_runtime(self) -> None:
        if self.device != "cpu":
            raise UserError("the LiteRT runner runs on the CPU (XNNPACK); use --device cpu or a phone/board profile")
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise UserError("ai-edge-litert is not installed: pip install 'edgecv[tflite]'") from None
        self._Interpreter, self._resolver = Interpreter, OpResolverType
        if not Path(self.source).is_file():
            raise UserError(f"TFLite file {self.source} not found")

    def load(self) -> None:
        # AUTO = builtin kernels with the XNNPACK delegate applied by default (as benchmark_model --use_xnnpack)
        self.interp = self._Interpreter(model_path=self.source, num_threads=self.threads,
                                        experimental_op_resolver_type=self._resolver.AUTO)
        self.interp.allocate_tensors()

    def prepare_inputs(self) -> None:
        self.inputs = []
        for i, d in enumerate(self.interp.get_input_details()):
            shape = tuple(int(s) if s > 0 else 1 for s in d["shape"])
            x = random_input(shape, d["dtype"], self.seed + i)
            self.interp.set_tensor(d["index"], x)  # set once, like benchmark_model
            self.inputs.append((list(shape), str(x.dtype)))

    def infer(self) -> Any:
        self.interp.invoke()

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"ai_edge_litert": version("ai-edge-litert")}
        except PackageNotFoundError:
            return {}

    def info(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "delegate": "xnnpack (default)"}
