"""`cer finetune train` under `accelerate launch`: two CPU processes train one run together.

Each process trains on its share of every batch (gloo process group); only rank 0 writes the run
folder, and the predictions gathered from both processes cover every val/test row exactly once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_finetune_train import synthetic_prompts, tiny_bert_checkpoint

from finetune.predict import predict_prompts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_launch_writes_one_complete_consistent_run(tmp_path):
    prompts = synthetic_prompts(tmp_path / "prompts.parquet")
    model = tiny_bert_checkpoint(tmp_path / "tiny_bert")
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # several processes; on a machine without GPUs they train on the CPU
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        f"--main_process_port={free_port()}",
        "-m",
        "cer.cli",
        "finetune",
        "train",
        f"--prompts={prompts}",
        f"--model={model}",
        f"--output-dir={run_dir}",
        "--method=full",
        "--max-steps=4",
        "--per-device-train-batch-size=8",
        "--per-device-eval-batch-size=10",  # 24 val rows: the last batch is short on one rank
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(f"{run_dir}: test accuracy") == 1  # rank 0 reports, rank 1 does not

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_step"] == 4
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.yaml",
        "labels.json",
        "versions.json",
        "metrics.json",
        "predictions.parquet",
        "summary.json",
        "adapter",
    }
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    rows = pd.read_parquet(prompts)
    for split in ("val", "test"):
        written = predictions.query("split == @split")
        expected = rows.query("split == @split")
        assert written["unit_id"].tolist() == expected["unit_id"].tolist()  # each once, in order
        assert (written["gold"].to_numpy() == expected["label"].to_numpy()).all()
    # Gathered in row order: reloading the saved model reproduces every row's probabilities.
    again, _ = predict_prompts(run_dir, rows.query("split == 'test'"))
    columns = [c for c in predictions.columns if c.startswith("prob_")]
    np.testing.assert_allclose(
        again[columns].to_numpy(), predictions.query("split == 'test'")[columns], atol=1e-5
    )
