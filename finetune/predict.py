"""Apply a finished run to new prompts: ``cer finetune predict RUN PROMPTS``.

The base model named in the run's config is loaded and the saved adapter put on top with
``PeftModel.from_pretrained`` (or the fully fine-tuned model is loaded from the run). Prompts
need no labels (``cer textualize`` without ``--labels`` leaves them empty): metrics are computed
only when every row has a gold label the run knows, and the outcome says why there are none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from evaluation.metrics import PredictionOutcome, has_label, score_if_labelled
from evaluation.runs import prediction_frame
from finetune.data import check_prompts, read_prompts, tokenize_texts


def read_run(run_dir: str | Path) -> tuple[Any, tuple[str, ...]]:
    """The resolved config and label names of a finished run."""
    import json

    from cer.config import load_yaml
    from finetune.config import config_from_mapping

    run_dir = Path(run_dir)
    if not (run_dir / "labels.json").exists() or not (run_dir / "adapter").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a finished finetune run (no labels.json/adapter); "
            "point at the folder `cer finetune train` wrote"
        )
    config = config_from_mapping(load_yaml(run_dir / "config.yaml"), source=str(run_dir))
    labels = tuple(json.loads((run_dir / "labels.json").read_text(encoding="utf-8")))
    return config, labels


def load_run_model(run_dir: str | Path) -> tuple[Any, Any, Any, tuple[str, ...]]:
    """(config, model, tokenizer, labels) of a finished run, ready for inference."""
    from transformers import AutoTokenizer

    from finetune.models import label_options, load_causal_lm, model_source, quantized_placement

    run_dir = Path(run_dir)
    config, labels = read_run(run_dir)
    adapter = run_dir / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    has_adapter = (adapter / "adapter_config.json").exists()
    if config.mode == "generate" and config.method == "full":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(adapter)  # the whole fine-tuned model
    elif config.mode != "classify":
        model = load_causal_lm(config)
    elif has_adapter:
        from transformers import AutoModelForSequenceClassification

        path, kwargs = model_source(config)  # a bundled name resolves again, wherever it lies
        kwargs.update(label_options(labels))
        if config.method == "qlora":
            kwargs.update(quantized_placement())
        model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(adapter)
    if has_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return config, on_inference_device(model, config).eval(), tokenizer, labels


def on_inference_device(model: Any, config: Any) -> Any:
    """The model on the GPU when there is one (a 4-bit model is already placed when loaded)."""
    import torch

    if torch.cuda.is_available() and config.method != "qlora":
        return model.to("cuda")
    return model


def classify_texts(model: Any, tokenizer: Any, input_ids: list[list[int]], batch_size: int = 32):
    """Class probabilities for token id lists, batched with per-batch padding."""
    import numpy as np
    import torch

    from cer.feedback import progress_bar
    from finetune.classify import softmax

    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    out = np.zeros((len(input_ids), model.config.num_labels))
    device = next(model.parameters()).device
    with progress_bar(len(order), "predicting") as bar:
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer.pad(
                {"input_ids": [input_ids[i] for i in chosen]}, return_tensors="pt"
            )
            with torch.no_grad():
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out[chosen] = softmax(logits.float().cpu().numpy())
            bar.update(len(chosen))
    return out


def predict_run(
    run_dir: str | Path, prompts: str | Path | pd.DataFrame, output: str | Path | None = None
) -> PredictionOutcome:
    """Predictions of a run on a prompts table, labelled or not, and metrics when they apply."""
    from cer.feedback import quiet_libraries

    quiet_libraries()
    config, labels = read_run(run_dir)
    frame = prompts if not isinstance(prompts, (str, Path)) else read_prompts(prompts)
    frame = check_prompts(
        frame,
        text_column=config.text_column,
        label_column=config.label_column,
        require_labels=False,
    )
    _, model, tokenizer, _ = load_run_model(run_dir)
    texts = frame[config.text_column].astype(str).tolist()
    if config.mode == "classify":
        ids, _ = tokenize_texts(
            tokenizer,
            texts,
            max_length=config.max_length,
            truncation_side=config.truncation_side,
            split="predict",
        )
        probabilities = classify_texts(model, tokenizer, ids)
    else:
        from finetune.generative import question, score_labels

        probabilities = score_labels(
            model, tokenizer, [question(config, t, labels) for t in texts], labels
        )
    frame = frame.assign(split="predict")
    predictions = prediction_frame(
        frame, probabilities, labels, run_id=Path(run_dir).name, label_column=config.label_column
    )
    if config.label_column in frame.columns:  # missing gold stays None, not the string "None"
        gold = frame[config.label_column]
        predictions["gold"] = gold.astype(str).where(has_label(gold), None).to_numpy(dtype=object)
    source = str(prompts) if isinstance(prompts, (str, Path)) else "the prompts"
    metrics, note = score_if_labelled(predictions, labels, source)
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        predictions.to_parquet(output, index=False)
    return PredictionOutcome(predictions, metrics, note)


def predict_prompts(
    run_dir: str | Path, prompts: str | Path | pd.DataFrame, output: str | Path | None = None
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """(predictions, metrics or None) of ``predict_run``, without its note."""
    outcome = predict_run(run_dir, prompts, output)
    return outcome.predictions, outcome.metrics
