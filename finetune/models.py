"""Loading classifiers: encoder or decoder family, full fine-tuning, LoRA or QLoRA.

Decoders get a classification head on the last non-padding token
(``AutoModelForSequenceClassification`` maps a Llama checkpoint to
``LlamaForSequenceClassification``, as in Richet et al. 2024). QLoRA loads the base in 4-bit NF4
with double quantization and bf16 compute, prepares it for k-bit training (which also turns on
gradient checkpointing) and trains LoRA adapters on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig

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


def _source(config: FinetuneConfig) -> dict[str, Any]:
    return {"gguf_file": config.gguf_file} if config.gguf_file else {}


def model_family(config: FinetuneConfig) -> str:
    """``encoder`` or ``decoder`` from the config, or from the checkpoint's model type."""
    if config.family != "auto":
        return config.family
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(config.model, **_source(config))
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"cannot read a model config from {config.model!r}: {err}. Pass a local checkpoint "
            "directory (no hub access here) and, for GGUF, --gguf-file."
        ) from err
    return "encoder" if model_config.model_type in ENCODER_TYPES else "decoder"


def load_tokenizer(config: FinetuneConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model, **_source(config))
    except OSError as err:
        raise ModelLoadError(
            f"cannot load a tokenizer from {config.model!r}: {err}. Pass a local checkpoint "
            "directory (--model DIR; there is no hub access offline) and, for GGUF, --gguf-file."
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
    kwargs: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        **_source(config),
    }
    if config.method == "qlora":
        if family == "encoder":
            raise ModelLoadError("QLoRA is for decoders; use method: lora for encoder models")
        kwargs["quantization_config"] = quantization_config()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(config.model, **kwargs)
    except ValueError as err:
        raise ModelLoadError(
            f"{config.model!r} has no sequence-classification architecture in transformers "
            f"({err}); use a BERT-like encoder or a causal LM such as Llama/Mistral/Qwen"
        ) from err
    except torch_oom_errors() as err:
        raise ModelLoadError(
            f"{config.model!r} does not fit in memory; use method: qlora, a smaller model or "
            "a machine with more GPU memory"
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


def torch_oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError, MemoryError)


def load_causal_lm(config: FinetuneConfig) -> Any:
    """The causal LM for generative SFT and zero-shot scoring (4-bit for QLoRA)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(_source(config))
    if config.method == "qlora":
        kwargs["quantization_config"] = quantization_config()
    try:
        return AutoModelForCausalLM.from_pretrained(config.model, **kwargs)
    except ValueError as err:
        raise ModelLoadError(
            f"{config.model!r} is not a causal language model; generate/zeroshot modes need "
            "a decoder checkpoint (e.g. an instruct Llama)"
        ) from err
    except torch_oom_errors() as err:
        raise ModelLoadError(f"{config.model!r} does not fit in memory; try method: qlora") from err


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
