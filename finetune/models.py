"""Loading classifiers: encoder or decoder family, full fine-tuning, LoRA or QLoRA.

Decoders get a classification head on the last non-padding token
(``AutoModelForSequenceClassification`` maps a Llama checkpoint to
``LlamaForSequenceClassification``, as in Richet et al. 2024). QLoRA loads the base in 4-bit NF4
with double quantization and bf16 compute, prepares it for k-bit training (which also turns on
gradient checkpointing) and trains LoRA adapters on top.

``save_merged`` folds a trained adapter into its base. A 4-bit base is never merged into: the
NF4 weights would be re-quantized after adding the update, silently losing part of it. For QLoRA
the base is reloaded unquantized (bfloat16, the QLoRA compute dtype) and the adapter merged there,
as the peft documentation recommends; that model is close to, not identical with, the 4-bit one
the adapter was trained against, so the summary says so.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finetune.config import TRAINING_DEFAULTS, FinetuneConfig

#: Model types that are encoders; everything else with a causal LM head counts as a decoder.
ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "deberta",
    "deberta-v2",
    "distilbert",
    "electra",
    "albert",
    "camembert",
    "mpnet",
    "modernbert",
}


class ModelLoadError(RuntimeError):
    """The checkpoint cannot be used as configured; the message says what to change."""


def model_source(config: FinetuneConfig) -> tuple[str, dict[str, Any]]:
    """Where to load from: the folder or Hub name (``bundled-*`` names resolved to the packaged
    weights) and loading options (GGUF file, offline cache). A missing local folder, or a Hub
    model that is neither cached nor reachable, fails here, at once."""
    from cer.bundled import ModelUnavailable, hub_options, resolve_model_name

    if config.model.startswith(("/", ".", "~")) and not Path(config.model).expanduser().exists():
        raise ModelLoadError(
            f"model directory {config.model!r} does not exist; set model: to a checkpoint "
            "directory (config.json and weights), a hub name, or a bundled model "
            "(bundled-minilm, bundled-smollm2)"
        )
    try:
        path, extra = resolve_model_name(config.model)
        gguf = config.gguf_file or extra.get("gguf_file")
        options = hub_options(path, filename=gguf or "config.json")
    except ModelUnavailable as err:
        raise ModelLoadError(str(err)) from err
    return path, {**({"gguf_file": gguf} if gguf else {}), **options}


def _alternatives() -> str:
    from cer.bundled import local_alternatives

    return f"To load a model offline, {local_alternatives()}; for GGUF add --gguf-file."


def model_path(config: FinetuneConfig) -> str:
    """The folder or Hub name the model is read from (a bundled name resolved)."""
    return model_source(config)[0]


def model_family(config: FinetuneConfig) -> str:
    """``encoder`` or ``decoder`` from the config, or from the checkpoint's model type."""
    if config.family != "auto":
        return config.family
    from transformers import AutoConfig

    path, source = model_source(config)
    try:
        model_config = AutoConfig.from_pretrained(path, **source)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"cannot read a model config from {config.model!r}: {err}. {_alternatives()}"
        ) from err
    return "encoder" if model_config.model_type in ENCODER_TYPES else "decoder"


def load_tokenizer(config: FinetuneConfig) -> Any:
    from transformers import AutoTokenizer

    path, source = model_source(config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **source)
    except OSError as err:
        raise ModelLoadError(
            f"cannot load a tokenizer from {config.model!r}: {err}. {_alternatives()}"
        ) from err
    if tokenizer.pad_token is None:
        # Decoders often ship without a pad token; padding is masked, so EOS is safe to reuse.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = config.truncation_side
    return tokenizer


def quantization_config() -> Any:
    """bitsandbytes 4-bit NF4, double quantization, bf16 compute (QLoRA)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def lora_config(config: FinetuneConfig, family: str, task_type: str) -> Any:
    from peft import LoraConfig

    r, alpha, dropout, targets = config.lora_settings(family)
    return LoraConfig(
        task_type=task_type,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(targets),
    )


def load_classifier(config: FinetuneConfig, labels: tuple[str, ...], tokenizer: Any) -> Any:
    """A sequence classifier over ``labels``, wrapped for LoRA/QLoRA when configured."""
    from transformers import AutoModelForSequenceClassification

    family = model_family(config)
    path, source = model_source(config)
    kwargs: dict[str, Any] = {**label_options(labels), **source}
    if config.method == "qlora":
        if family == "encoder":
            raise ModelLoadError("QLoRA is for decoders; use method: lora for encoder models")
        kwargs.update(quantized_placement())
    try:
        with memory_advice(config, "loading the model"):
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except ValueError as err:
        raise ModelLoadError(
            f"{config.model!r} has no sequence-classification architecture in transformers "
            f"({err}); use a BERT-like encoder or a causal LM such as Llama/Mistral/Qwen"
        ) from err
    model.config.pad_token_id = tokenizer.pad_token_id
    if config.method == "full":
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    peft_config = lora_config(config, family, "SEQ_CLS")
    try:
        return get_peft_model(model, peft_config)
    except ValueError as err:
        raise ModelLoadError(
            f"LoRA target modules {peft_config.target_modules} not found in {config.model!r}; "
            "set lora_target_modules to module names of this architecture"
        ) from err


def label_options(labels: tuple[str, ...]) -> dict[str, Any]:
    """``from_pretrained`` options of a classification head over ``labels``, names included."""
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
    }


def quantized_placement() -> dict[str, Any]:
    """4-bit loading arguments; on GPUs each process's base goes to its own device, since a
    quantized model cannot be moved after loading (and all ranks would otherwise share GPU 0)."""
    import torch

    placement: dict[str, Any] = {"quantization_config": quantization_config()}
    if torch.cuda.is_available():
        placement["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return placement


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory error, or a CPU allocation failure (a plain RuntimeError in torch)."""
    import torch

    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)
    )


@contextmanager
def memory_advice(config: FinetuneConfig, stage: str):
    """Turn running out of memory during ``stage`` into a ModelLoadError that says what to lower."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        training = {**TRAINING_DEFAULTS, **config.training}
        batch = training["per_device_train_batch_size"]
        advice = [
            f"lower per_device_train_batch_size (now {batch}; raise "
            + "gradient_accumulation_steps to keep the effective batch size)",
            f"lower max_length (now {config.max_length} tokens)",
        ]
        if config.method != "qlora" and model_family(config) == "decoder":
            advice.append("use method: qlora (4-bit base, decoders only)")
        if not training.get("gradient_checkpointing"):
            advice.append("set gradient_checkpointing: true")
        raise ModelLoadError(
            f"out of memory while {stage} {config.model!r} ({err}). To fit: "
            + "; ".join(advice)
            + "; or use a smaller model or a device with more memory"
        ) from err


def require_decoder(config: FinetuneConfig) -> None:
    """Generation needs a causal LM: an encoder would load with a random LM head and score noise."""
    if model_family(config) == "encoder":
        raise ModelLoadError(
            f"{config.model!r} is an encoder (BERT-like); generate/zeroshot modes need a decoder "
            "checkpoint (e.g. an instruct Llama). Use mode: classify for encoders."
        )


def load_causal_lm(config: FinetuneConfig) -> Any:
    """The causal LM for generative SFT and zero-shot scoring (4-bit for QLoRA)."""
    from transformers import AutoModelForCausalLM

    require_decoder(config)
    path, kwargs = model_source(config)
    if config.method == "qlora":
        kwargs.update(quantized_placement())
    try:
        with memory_advice(config, "loading the model"):
            return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except ValueError as err:
        raise ModelLoadError(
            f"{config.model!r} is not a causal language model; generate/zeroshot modes need "
            "a decoder checkpoint (e.g. an instruct Llama)"
        ) from err


def save_merged(
    model: Any, config: FinetuneConfig, labels: tuple[str, ...], tokenizer: Any, run_dir: Path
) -> dict[str, Any]:
    """Write ``run_dir/merged``: the trained LoRA adapter folded into the base weights, with the
    tokenizer, loadable by plain ``from_pretrained``. Returns a note for the run summary."""
    import torch

    note: dict[str, Any] = {"path": "merged"}
    if config.method == "qlora":
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        path, kwargs = model_source(config)
        kwargs["dtype"] = torch.bfloat16
        if config.mode == "classify":
            auto = AutoModelForSequenceClassification
            kwargs.update(label_options(labels))
        else:
            auto = AutoModelForCausalLM
        with memory_advice(config, "reloading the unquantized base of"):
            base = auto.from_pretrained(path, **kwargs)
        base.config.pad_token_id = tokenizer.pad_token_id
        model = PeftModel.from_pretrained(base, run_dir / "adapter")
        note.update(
            base="reloaded unquantized in bfloat16",
            caveat="the adapter was trained on the 4-bit NF4 base; the merged model's outputs "
            "are close to, not identical with, those of the run",
        )
    merged = model.merge_and_unload()
    merged.save_pretrained(run_dir / "merged")
    tokenizer.save_pretrained(run_dir / "merged")
    note["dtype"] = str(next(merged.parameters()).dtype).removeprefix("torch.")
    return note


def dequantize_gguf(model_dir: str | Path, gguf_file: str, out_dir: str | Path) -> Path:
    """Save a plain (float32 safetensors) copy of a GGUF causal LM, which loads much faster."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    quantized = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file)
    values = quantized.config.to_dict()
    values.pop("quantization_config", None)
    plain_config = AutoConfig.for_model(values.pop("model_type"), **values)
    plain = AutoModelForCausalLM.from_config(plain_config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_file).save_pretrained(out_dir)
    return out_dir
