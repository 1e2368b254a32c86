"""`armin bench model` end to end on a tiny grid: every contender and mode measured, ratios and targets reported."""

import json

import pytest
import torch

from armin.bench.model import MEMORY_VARIANTS, MODES, VARIANTS, Row, bench_model, format_targets, targets
from armin.model.graphs import capture_eager
from armin.cli.main import main


def test_bench_model_reports_every_contender_mode_ratio_and_target(capsys):
    threads = torch.get_num_threads()
    try:
        code = main(["bench", "model", "--batch", "2", "--seq-len", "6", "--hidden", "8", "--repeats", "1",
                     "--warmup", "0", "--threads", "1", "--json"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in result["rows"]}
    names = [f"{f}/{c}" for f, c in VARIANTS] + list(MEMORY_VARIANTS)
    expected = ({f"armin {v}" for v in names} | {f"naive {v}" for v in names}
                | {f"eager {v}" for v in ["reference/armin", *MEMORY_VARIANTS]} | {"nn.LSTM H=8", "nn.LSTM H=24"})
    assert set(rows) == expected
    for r in rows.values():
        assert set(r["us_per_step"]) == set(MODES) and all(v > 0 for v in r["us_per_step"].values())
        assert r["peak_train_mib"] is not None and r["peak_train_mib"] > 0
    fast = rows["armin reference/armin"]["ratios"]
    assert set(fast) == {"vs nn.LSTM H=8", "vs nn.LSTM H=24", "naive speedup", "eager speedup"}
    (target,) = result["targets"]
    assert {"train_vs_wide_lstm", "naive_speedup", "peak_below_wide_lstm"} <= set(target)
    # issue 10's targets: each fused memory variant against its own eager loop, AwTA vs ARMIN, ARMIN vs the LSTMs
    assert set(target["eager_speedup"]) == {"reference/armin", *MEMORY_VARIANTS}
    ratio = rows["eager awta"]["us_per_step"]["train"] / rows["armin awta"]["us_per_step"]["train"]
    assert abs(target["eager_speedup"]["awta"] - ratio) < 1e-9
    assert {"awta_vs_armin", "vs_lstm", "vs_wide_lstm_fused"} <= set(target)
    assert result["environment"]["threads"] == 1


def test_bench_model_rejects_bad_options_in_one_line(capsys):
    assert main(["bench", "model", "--batch", "0"]) == 2
    assert main(["bench", "model", "--modes", "train,fly"]) == 2
    assert main(["bench", "model", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("armin: error:") == 3 and "Traceback" not in err


def test_bench_model_on_cuda_is_one_line_and_exit_2_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda runs")
    assert main(["bench", "model", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device cuda" in err and "Traceback" not in err


def test_the_graphed_contenders_and_issue_11s_targets_on_cpu(capsys):
    """The CUDA grid's code path on CPU: graphed twins with `capture_eager` (a mock of the CUDA-only capture)."""
    result = bench_model((2,), (5,), hidden=8, modes=("train", "infer"), repeats=1, warmup=0, naive=False,
                         as_json=True, graphs=capture_eager, eager=False)
    capsys.readouterr()
    rows = {r["name"]: r for r in result["rows"]}
    assert [n for n in rows if n.startswith("graphed")] == ["graphed reference/armin"]  # the targets' model
    g = rows["graphed reference/armin"]
    assert g["kind"] == "graphed" and g["peak_train_mib"] > 0 and all(v > 0 for v in g["us_per_step"].values())
    fused = rows["armin reference/armin"]["us_per_step"]["train"]
    assert abs(g["ratios"]["graph speedup"] - fused / g["us_per_step"]["train"]) < 1e-9
    assert not any(r["kind"] == "eager" for r in rows.values())  # eager=False
    assert {"date", "torch", "device"} <= set(result["environment"])
    parsed = [Row(**{k: v for k, v in r.items()}) for r in result["rows"]]
    (t,) = targets(parsed, 8, gpu=True)
    best = min(fused, g["us_per_step"]["train"])
    assert t["gpu_path"] == ("armin" if best == fused else "graphed") and t["gpu_us_per_step"] == best
    assert abs(t["gpu_vs_lstm"] - best / rows["nn.LSTM H=8"]["us_per_step"]["train"]) < 1e-9
    assert t["gpu_vs_wide_lstm_bound"] == 0.5 and t["gpu_vs_lstm_ok"] == (t["gpu_vs_lstm"] <= 1.0)
    assert "issue 11:" in format_targets([t], 8)


def test_a_contender_that_raises_is_an_error_row_and_the_others_are_still_timed():
    """A kernel that does not build on some GPU (say, out of shared memory) must not lose a cell's other times."""
    from armin.bench.model import Contender, add_ratios, bench_cell, format_cell, make_contenders

    contenders = [c for c in make_contenders(8, torch.device("cpu"), naive=False, eager=False, tardis=False)
                  if c.name in ("armin reference/armin", "nn.LSTM H=8")]

    def broken(x, train, gen):
        raise RuntimeError("out of resources: shared memory, required: 300000\nmore detail")
    base = contenders[0]
    contenders.append(Contender("triton reference/armin", "triton", "reference/armin", base.module, broken))
    rows = bench_cell(contenders, 2, 4, ("train", "infer"), 2, 0, torch.device("cpu"))
    by = {r.name: r for r in rows}
    bad = by["triton reference/armin"]
    assert bad.error == "train: RuntimeError: out of resources: shared memory, required: 300000"
    assert bad.us_per_step == {} and bad.ratios == {} and bad.peak_train_mib is None
    assert all(by[n].error is None and set(by[n].us_per_step) == {"train", "infer"}
               for n in ("armin reference/armin", "nn.LSTM H=8"))
    assert "vs nn.LSTM H=8" in by["armin reference/armin"].ratios
    assert "\ntriton reference/armin    failed: train: RuntimeError: out of" in format_cell(rows, ("train", "infer"))
    add_ratios(rows)  # again: an error row is skipped, not a KeyError
    (t,) = targets(rows, 8, gpu=True)
    assert t["gpu_path"] == "armin"


def test_no_tardis_leaves_the_tardis_family_out(capsys):
    threads = torch.get_num_threads()
    try:
        code = main(["bench", "model", "--batch", "2", "--seq-len", "4", "--hidden", "8", "--repeats", "1",
                     "--warmup", "0", "--threads", "1", "--modes", "infer", "--no-naive", "--no-eager", "--no-tardis",
                     "--json"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert names == {f"armin {f}/{c}" for f, c in VARIANTS} | {"nn.LSTM H=8", "nn.LSTM H=24"}
