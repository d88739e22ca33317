"""A weights file carries its own configuration: sidecar model_kwargs / mean / std / input size, honoured by
eval, compress, export, bench and train, and carried into .edc files and export metadata; without a sidecar
the class count is read from the head's shape."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from edgecv.checkpoint import save_checkpoint
from edgecv.errors import UserError
from edgecv.models import create_model
from edgecv.workflows import resolve_weights, weights_cfg


def _relu6_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.ReLU6) for m in model.modules())


@pytest.fixture
def v1_file(tmp_path):
    """A MobileNet v1 0.25 with ReLU6, 128 px and TF-style normalisation, described by its sidecar."""
    torch.manual_seed(0)
    model = create_model("mobilenet_v1_025", act="RE6")
    assert _relu6_count(model) > 0
    return save_checkpoint(model, tmp_path / "v1.safetensors",
                           {"model": "mobilenet_v1_025", "num_classes": 1000, "model_kwargs": {"act": "RE6"},
                            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": [3, 128, 128]})


def test_plain_37_class_file_without_sidecar_exports(tmp_path):
    from edgecv.export import export

    torch.manual_seed(0)
    path = tmp_path / "b0-37.safetensors"
    save_file(create_model("efficientnet_b0", num_classes=37).state_dict(), str(path))
    model, cfg = resolve_weights("efficientnet_b0", path)
    assert cfg["num_classes"] == 37 and model.classifier[-1].out_features == 37
    rep = export("efficientnet_b0", "onnx", weights=str(path), out=tmp_path / "b0.onnx", input_size=(64, 64))
    import onnx
    import onnxruntime as ort

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "b0.onnx")).metadata_props}
    assert props["num_classes"] == "37" and rep["file"].endswith("b0.onnx")

    sess = ort.InferenceSession(str(tmp_path / "b0.onnx"))
    out = sess.run(None, {sess.get_inputs()[0].name: torch.randn(1, 3, 64, 64).numpy()})[0]
    assert out.shape == (1, 37)


def test_mismatch_message_names_no_missing_option(tmp_path):
    path = tmp_path / "lenet.safetensors"
    save_file(create_model("lenet5").state_dict(), str(path))
    with pytest.raises(UserError) as e:
        resolve_weights("squeezenet1_1", path)
    assert "does not fit squeezenet1_1" in str(e.value) and "--num-classes" not in str(e.value)


def test_sidecar_kwargs_and_preprocessing_are_honoured(v1_file, tmp_path):
    model, cfg = resolve_weights("mobilenet_v1_025", v1_file)
    assert _relu6_count(model) > 0 and cfg["model_kwargs"] == {"act": "RE6"}
    assert weights_cfg("mobilenet_v1_025", v1_file)["mean"] == [0.5, 0.5, 0.5]
    from edgecv.export.source import resolve_source

    src = resolve_source("mobilenet_v1_025", weights=str(v1_file))
    assert src.input_size == (3, 128, 128) and src.mean == (0.5,) * 3 and src.std == (0.25,) * 3
    assert src.meta["model_kwargs"] == {"act": "RE6"} and _relu6_count(src.model) > 0
    src = resolve_source(v1_file)  # the checkpoint alone: its sidecar names the model
    assert src.input_size == (3, 128, 128) and _relu6_count(src.model) > 0


def test_compress_carries_kwargs_into_the_edc(v1_file, tmp_path):
    from edgecv.codec import read_file
    from edgecv.pipeline import compress, load_compressed

    out = tmp_path / "v1.edc"
    compress("mobilenet_v1_025", out=out, weights=str(v1_file), recipe="recipes/deep_compression_generic.yaml")
    _, meta = read_file(out)
    assert meta["model_kwargs"] == {"act": "RE6"} and meta["mean"] == [0.5] * 3 and meta["input_size"] == [3, 128, 128]
    decoded, _ = load_compressed(out)
    assert _relu6_count(decoded) > 0


def test_unknown_sidecar_option_is_refused(tmp_path):
    path = save_checkpoint(create_model("lenet5"), tmp_path / "l.safetensors", {"model": "lenet5"})
    side = path.with_suffix(".json")
    side.write_text(json.dumps({"model": "lenet5", "model_kwargs": {"evil": 1}}))
    with pytest.raises(UserError, match="evil"):
        resolve_weights("lenet5", path)


def test_eval_uses_sidecar_preprocessing(v1_file, shared):
    from edgecv.workflows import evaluate_model

    res = evaluate_model("mobilenet_v1_025", str(v1_file), "imagenet-samples", limit=8)
    assert res["input_size"] == [3, 128, 128] and res["mean"] == [0.5] * 3 and res["std"] == [0.25] * 3
    res = evaluate_model(str(v1_file), None, "imagenet-samples", limit=8)  # the checkpoint alone
    assert res["model"] == "mobilenet_v1_025" and res["input_size"] == [3, 128, 128]


def test_models_and_info_show_the_pretrained_table(capsys):
    from edgecv.cli import main

    assert main(["models", "--pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {(r["model"], r["tag"]): r for r in rows}
    assert by[("mobilenet_v1_050", "imagenet")]["source"] == "shared"
    assert by[("mobilenet_v1_050", "imagenet")]["input_size"] == [3, 160, 160]
    assert by[("resnet18", "imagenet")]["where"].startswith("https://download.pytorch.org/models/resnet18-")
    assert main(["models", "--json", "squeezenet1_1"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["pretrained"] == ["imagenet (torchvision)"]
    assert main(["info", "mobilenet_v1_025", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [r["tag"] for r in info["pretrained"]] == ["imagenet"] and info["pretrained"][0]["mean"][0] == 128 / 255
