"""PyTorch eager runner: a zoo model name (random or given weights) or a .safetensors checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.bench.base import Runner
from edgecv.errors import UserError


class TorchRunner(Runner):
    name = "torch"
    formats = ("torch",)

    def import_runtime(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process (in-process runs after the first)
            pass
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("device cuda asked for but torch sees no GPU; use --device cpu")
        self._torch = torch

    def _model_name_and_weights(self) -> tuple[str, str | None]:
        p = Path(self.source)
        if p.suffix == ".safetensors":
            if not p.is_file():
                raise UserError(f"checkpoint {p} not found")
            from edgecv.checkpoint import load_meta

            name = load_meta(p).get("model")
            if not name:
                raise UserError(f"{p} has no model name in its metadata ({p.with_suffix('.json')}); "
                                "bench the model by name with --weights instead")
            return name, str(p)
        if p.suffix in (".onnx", ".tflite"):
            raise UserError(f"{p} is not a PyTorch model; use --format {p.suffix[1:]}")
        return self.source, self.weights

    def load(self) -> None:
        torch = self._torch
        from edgecv.models import get_spec
        from edgecv.workflows import resolve_weights

        from edgecv.usermodel import is_import_path, load_user_model, size_of

        name, weights = self._model_name_and_weights()
        if is_import_path(name):  # a user's model: mypkg.nets:build_net [--weights FILE]
            model, cfg = load_user_model(name, weights)
            size = size_of(model, cfg=cfg, input_size=self.input_size[-2:] if self.input_size else None, name=name)
            from types import SimpleNamespace

            self.spec = SimpleNamespace(name=name, input_size=size)  # what prepare_inputs / info read
        else:
            self.spec = get_spec(name)
            model, cfg = resolve_weights(name, weights, seed=self.seed)  # a file or a table tag, with its options
        model.eval()
        self.weights_input_size = cfg.get("input_size")  # the size the weights were made for
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.precision not in (None, "fp32", "fp16"):
            raise UserError(f"torch runner runs fp32 (or fp16 on cuda), not {self.precision}; "
                            "use --format onnx or tflite for int8")
        if dtype == torch.float16 and self.device != "cuda":
            raise UserError("fp16 PyTorch inference is for --device cuda; on CPU use fp32")
        self.model = model.to(device=self.device, dtype=dtype)
        self._dtype = dtype

    def prepare_inputs(self) -> None:
        torch = self._torch
        size = self.input_size or tuple(getattr(self, "weights_input_size", None) or self.spec.input_size)
        if len(size) == 2:  # --input-size H W: the model's own channel count
            size = (self.spec.input_size[0], *size)
        g = torch.Generator().manual_seed(self.seed)
        self.x = torch.randn((1, *size[-3:]), generator=g).to(device=self.device, dtype=self._dtype)

    def infer(self) -> Any:
        torch = self._torch
        with torch.inference_mode():
            y = self.model(self.x)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return y

    def versions(self) -> dict[str, str]:
        import torch

        v = {"torch": torch.__version__}
        if self.device == "cuda":
            v["cuda"] = str(torch.version.cuda)
            v["gpu"] = torch.cuda.get_device_name(0)
        return v

    def info(self) -> dict[str, Any]:
        return {"model": self.spec.name, "input_shape": list(self.x.shape), "input_dtype": str(self.x.dtype)}

    def extra_memory(self) -> dict[str, float]:
        if self.device == "cuda":
            return {"gpu_peak_mem_mb": self._torch.cuda.max_memory_allocated() / 2**20}
        return {}
