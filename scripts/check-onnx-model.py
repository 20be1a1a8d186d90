#!/usr/bin/python3
"""Validates Lopper's ONNX exports against the ONNX specification with the reference `onnx` package (Debian's
python3-onnx): onnx.checker.check_model(full_check=True) runs strict shape inference over the whole graph.

usage: check-onnx-model.py SAMPLES_DIR      (checks SAMPLES_DIR/*/onnx*/model.onnx)
"""
import sys
from pathlib import Path

import onnx


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    files = sorted(Path(sys.argv[1]).glob("*/onnx*/model.onnx"))
    if not files:
        print(f"no */onnx*/model.onnx under {sys.argv[1]}", file=sys.stderr)
        return 2
    passed = failed = 0
    for f in files:
        try:
            # by path, so external data (model.onnx.data) is resolved beside the file
            onnx.checker.check_model(str(f), full_check=True)
            m = onnx.load(str(f), load_external_data=False)
            opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
            print(f"{f}: onnx {onnx.__version__} check_model(full_check) OK: ir {m.ir_version}, opset {opset}, "
                  f"{len(m.graph.node)} nodes, inputs {[i.name for i in m.graph.input][:3]}...")
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every failure, then fail the run
            print(f"{f}: FAIL {e}")
            failed += 1
    print(f"onnx-spec: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
