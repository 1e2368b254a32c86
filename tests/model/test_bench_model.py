"""`armin bench model` end to end on a tiny grid: every contender and mode measured, ratios and targets reported."""

import json

import torch

from armin.bench.model import MEMORY_VARIANTS, MODES, VARIANTS
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
