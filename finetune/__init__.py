"""Fine-tune and evaluate language models on textualized prompts (``cer finetune``).

``config`` (options), ``data`` (prompts in, tokenized splits out), ``models`` (encoder/decoder
classifiers, LoRA, QLoRA), ``classify`` and ``generative`` (training recipes), ``metrics``,
``runs`` (the run folder), ``runner`` (single runs and cross-validation), ``predict``, ``cli``.
"""
