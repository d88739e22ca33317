"""Write tests/fixtures/model_counts.json: params and MACs of every registered model at its
default input size (a regression pin; tests/test_published_counts.py checks the figures
against the papers). Review the diff before committing. Usage: .venv/bin/python scripts/pin_model_counts.py
"""
import json
from pathlib import Path

import edgecv

out = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "model_counts.json"
rows = {}
for name in edgecv.list_models():
    i = edgecv.model_info(name)
    rows[name] = {"params": i["params"], "macs": i["macs"], "input_size": i["input_size"]}
out.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
print(f"pinned {len(rows)} models -> {out}")
