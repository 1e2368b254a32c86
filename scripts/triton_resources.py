"""Shared memory, registers and stack (spill) bytes per thread of both Triton kernels, compiled for sm_90
without a GPU at the default sizes (`ModelConfig()`), float32, for a few variants (issue 11).

    PYTHONPATH=. python scripts/triton_resources.py [VARIANT ...]   # default: all of VARIANTS

Each compile takes 1-2 minutes on a loaded 2-core machine. Registers and stack come from the cuobjdump
bundled with triton (`--dump-resource-usage` on the cubin); run it in a process without TRITON_INTERPRET.
"""

import os
import re
import subprocess
import sys
import tempfile

import triton

from armin.model import ModelConfig, build_model, fused
from armin.model import triton_backward as tb
from armin.model import triton_kernel as tk

VARIANTS = {"reference/armin/gumbel": {}, "reference/armin/soft": {"read": "soft"},
            "paper/lstm/gumbel": {"formulation": "paper", "cell": "lstm"}}
CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")


def resources(kernel, constants: dict, dtype: str = "fp32") -> tuple[int, int, int]:
    """(shared bytes, registers, stack bytes per thread) of `kernel` compiled as the launches do."""
    k = tk.compiled(kernel, constants, dtype)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(k.asm["cubin"])
        out = subprocess.run([CUOBJDUMP, "--dump-resource-usage", path], capture_output=True, text=True,
                             check=True).stdout
    reg, stack = (int(re.search(rf"{key}:(\d+)", out).group(1)) for key in ("REG", "STACK"))
    return k.metadata.shared, reg, stack


def main(names: list[str]) -> None:
    for name in names or list(VARIANTS):
        spec = fused.pack(build_model(ModelConfig(**VARIANTS[name]), 4, 3, seed=0), 0, 1.0).spec
        for kname, kernel, constants in (("backward", tb._armin_backward, tb.constants(spec)),
                                         ("forward", tk._armin_forward,
                                          tk.forward_constants(spec, True, not spec.soft))):
            shared, reg, stack = resources(kernel, constants)
            print(f"{name:24s} {kname:8s} shared {shared:7d} B  regs {reg:3d}  stack {stack:6d} B/thread",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
