"""Run fingerprints: a run folder is reused or resumed only by the run that made it.

Train on prompts A, then on prompts B into the same folder: B's numbers must be B's. Change one
prompt of a file at the same path: the run is redone. Ask to resume a folder that holds another
run: a clear error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_finetune_train import synthetic_prompts, tiny_bert_checkpoint

from cer.cli import main
from evaluation.runs import RunMismatchError, read_fingerprint
from featurebaseline.config import BaselineConfig
from featurebaseline.runner import run_baseline
from finetune.config import config_from_mapping
from finetune.runner import run_finetune


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return tiny_bert_checkpoint(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture()
def two_prompt_sets(tmp_path):
    """Prompt sets A and B: other clips, other texts, the same labels."""
    a = synthetic_prompts(tmp_path / "a.parquet", seed=0)
    b = pd.read_parquet(synthetic_prompts(tmp_path / "b.parquet", seed=1))
    b["clip_id"] = "b_" + b["clip_id"]
    b["unit_id"] = "b_" + b["unit_id"]
    b.to_parquet(tmp_path / "b.parquet")
    return a, tmp_path / "b.parquet"


def finetune_config(prompts, model, output_dir, **extra):
    """Six steps with a checkpoint every two, so a folder always holds checkpoints."""
    return config_from_mapping(
        {
            "prompts": str(prompts),
            "output_dir": str(output_dir),
            "model": model,
            "method": "full",
            "max_steps": 6,
            "per_device_train_batch_size": 8,
            "eval_strategy": "no",
            "save_strategy": "steps",
            "save_steps": 2,
            **extra,
        }
    )


def test_prompts_b_into_a_folder_of_prompts_a_trains_and_scores_b(
    two_prompt_sets, tiny_bert, tmp_path, caplog
):
    a, b = two_prompt_sets
    run_a = run_finetune(finetune_config(a, tiny_bert, tmp_path / "run")).runs[0]
    assert run_a.summary["global_step"] == 6
    recorded_a = read_fingerprint(run_a.run_dir)

    caplog.set_level("WARNING", logger="evaluation")
    run_b = run_finetune(finetune_config(b, tiny_bert, tmp_path / "run")).runs[0]

    assert not run_b.reused
    assert run_b.summary["resumed_from"] is None  # not A's final checkpoint
    assert run_b.summary["global_step"] == 6  # six real steps, not zero
    predicted = pd.read_parquet(run_b.run_dir / "predictions.parquet")
    assert predicted["clip_id"].str.startswith("b_").all()  # scored on B, by B's model
    assert "held a run of other inputs (data prompts; config (prompts))" in caplog.text
    assert read_fingerprint(run_b.run_dir)["data"]["prompts"] != recorded_a["data"]["prompts"]


def test_changing_one_prompt_in_place_redoes_the_run(two_prompt_sets, tiny_bert, tmp_path):
    a, _ = two_prompt_sets
    config = finetune_config(a, tiny_bert, tmp_path / "run", save_strategy="no")
    first = run_finetune(config).runs[0]
    recorded = read_fingerprint(first.run_dir)
    assert run_finetune(config).runs[0].reused  # same file, same config: read back

    table = pd.read_parquet(a)
    table.loc[0, "prompt"] = table.loc[0, "prompt"] + " Quietly."
    table.to_parquet(a)
    again = run_finetune(config).runs[0]

    assert not again.reused
    assert read_fingerprint(again.run_dir)["data"]["prompts"] != recorded["data"]["prompts"]
    assert read_fingerprint(again.run_dir)["config"] == recorded["config"]


def test_asking_to_resume_another_run_is_an_error(two_prompt_sets, tiny_bert, tmp_path, capsys):
    a, b = two_prompt_sets
    run_finetune(finetune_config(a, tiny_bert, tmp_path / "run", max_steps=2))

    with pytest.raises(RunMismatchError, match="resume: true only continues the same run"):
        run_finetune(finetune_config(b, tiny_bert, tmp_path / "run", resume=True))

    code = main(
        ["finetune", "train", "--prompts", str(b), "--model", tiny_bert, "--output-dir",
         str(tmp_path / "run"), "--resume", "--max-steps", "2"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "holds a run of other inputs (data prompts" in err and "Traceback" not in err


def test_an_interrupted_run_resumes_its_own_checkpoint(two_prompt_sets, tiny_bert, tmp_path):
    from transformers import Trainer

    a, _ = two_prompt_sets
    config = finetune_config(a, tiny_bert, tmp_path / "run")
    save = Trainer._save_checkpoint

    def killed_after_first_save(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt  # as if killed right after checkpoint-2 was written

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_save_checkpoint", killed_after_first_save)
        with pytest.raises(KeyboardInterrupt):
            run_finetune(config)
    resumed = run_finetune(config).runs[0]
    assert resumed.summary["resumed_from"].endswith("checkpoint-2")
    assert resumed.summary["global_step"] == 6


# ---------------------------------------------------------------- the feature-fusion baseline


def functionals_table(path, *, seed: int, prefix: str):
    """A features table: eGeMAPS-like columns that carry the label, train/val/test splits."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", 40), ("val", 12), ("test", 12)):
        for i in range(n):
            label = ("calm", "tense")[i % 2]
            values = rng.normal(size=4) + (1.5 if label == "tense" else 0.0)
            rows.append(
                {"clip_id": f"{prefix}{split}{i}", "label": label, "split": split}
                | {f"egemaps_f{j}": float(v) for j, v in enumerate(values)}
            )
    pd.DataFrame(rows).to_parquet(path)
    return path


def baseline_config(source, output_dir, **extra) -> BaselineConfig:
    return BaselineConfig(
        source=str(source),
        output_dir=str(output_dir),
        modalities="A",
        functionals=True,
        epochs=4,
        patience=0,
        batch_size=8,
        hidden=8,
        **extra,
    )


def test_baseline_on_b_after_a_never_resumes_a_last_checkpoint(tmp_path):
    a = functionals_table(tmp_path / "a.parquet", seed=0, prefix="a_")
    b = functionals_table(tmp_path / "b.parquet", seed=1, prefix="b_")
    first = run_baseline(baseline_config(a, tmp_path / "run")).runs[0]
    assert (first.run_dir / "checkpoints" / "last.pt").exists()

    second = run_baseline(baseline_config(b, tmp_path / "run")).runs[0]

    assert not second.reused and second.summary["resumed_from_epoch"] == 0
    assert second.summary["epochs_run"] == 4
    predicted = pd.read_parquet(second.run_dir / "predictions.parquet")
    assert predicted["clip_id"].str.startswith("b_").all()
    assert run_baseline(baseline_config(b, tmp_path / "run")).runs[0].reused

    with pytest.raises(RunMismatchError, match="data features"):
        run_baseline(baseline_config(a, tmp_path / "run", resume=True))
