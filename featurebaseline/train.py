"""Train one fusion arm on assembled features: seeds, early stopping on val F1, checkpoints, resume.

A plain PyTorch loop: the whole feature set fits in memory (a MELD-sized run is a few hundred
megabytes at most), so batches are slices of tensors already on the device. Every epoch writes
``checkpoints/last.pt`` (model, optimizer, RNG states, best weights so far), so a killed run
resumes at the next epoch. The run folder has the layout of ``cer finetune`` (``evaluation.runs``)
with the model in ``model/model.pt`` instead of an adapter. Both files hold tensors and plain
values only and are read with ``torch.load(weights_only=True)``: a run folder from elsewhere
cannot run code when it is loaded.

Under ``accelerate launch --num_processes N`` (``--cpu`` without GPUs) training is data-parallel:
``accelerate`` wraps model and optimizer (DDP averages the gradients), every process takes its
share of each batch of the same shuffled order, and all evaluate the whole validation split, so
they stop at the same epoch; only the main process writes checkpoints and the run folder.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurebaseline.config import BaselineConfig
from featurebaseline.features import FeatureError, FeatureSet, ModalityFeatures


class FeatureMismatch(ValueError):
    """Features do not have the dimensions a saved model was trained on."""


class CheckpointError(FeatureError):
    """A saved model or checkpoint cannot be read as tensors and plain values only."""


def load_tensors(path: Path, device: str, fix: str) -> dict:
    """``torch.load`` with ``weights_only``: a file that holds pickled objects is refused."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        first = " ".join(str(err).split())[:160]
        raise CheckpointError(
            f"{path} cannot be read as tensors only ({type(err).__name__}: {first}); it is "
            f"damaged, written by an older version, or holds pickled code; {fix}"
        ) from err


def _numpy_rng_state() -> dict:
    import torch

    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "kind": str(kind),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_rng_state(saved: dict) -> None:
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached_gaussian"],
        )
    )


@dataclass(frozen=True)
class Standardizer:
    """Per-column mean and std of the training examples, over present values only."""

    stats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]

    @classmethod
    def fit(cls, features: FeatureSet) -> Standardizer:
        stats: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for name, m in features.modalities.items():
            stats[name] = {}
            if m.sequence is not None:
                valid = m.sequence[m.steps & m.present[:, None]]
                stats[name]["sequence"] = _moments(valid, m.sequence.shape[-1])
            if m.vector is not None:
                stats[name]["vector"] = _moments(m.vector[m.present], m.vector.shape[-1])
        return cls(stats)

    def apply(self, features: FeatureSet) -> FeatureSet:
        out = {}
        for name, m in features.modalities.items():
            seq = vec = None
            if m.sequence is not None:
                mean, std = self.stats[name]["sequence"]
                valid = (m.steps & m.present[:, None])[..., None]
                seq = np.where(valid, (m.sequence - mean) / std, 0.0).astype(np.float32)
            if m.vector is not None:
                mean, std = self.stats[name]["vector"]
                vec = np.where(m.present[:, None], (m.vector - mean) / std, 0.0).astype(np.float32)
            out[name] = ModalityFeatures(
                m.present, seq, m.steps, vec, m.sequence_columns, m.vector_columns
            )
        return FeatureSet(features.rows, out, features.step_seconds)


def _moments(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    if not len(values):
        return np.zeros(width, np.float32), np.ones(width, np.float32)
    std = values.std(0)
    return values.mean(0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def pick_device(name: str) -> str:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but no GPU is visible; use --device auto or cpu")
    return (
        "cuda"
        if name == "auto" and torch.cuda.is_available()
        else ("cpu" if name == "auto" else name)
    )


def to_tensors(features: FeatureSet, device: str) -> dict[str, dict]:
    import torch

    out = {}
    for name, m in features.modalities.items():
        batch = {"present": torch.as_tensor(m.present, device=device)}
        if m.sequence is not None:
            batch["sequence"] = torch.as_tensor(m.sequence, device=device)
            batch["steps"] = torch.as_tensor(m.steps, device=device)
        if m.vector is not None:
            batch["vector"] = torch.as_tensor(m.vector, device=device)
        out[name] = batch
    return out


def _slice(tensors: dict[str, dict], index) -> dict[str, dict]:
    return {m: {k: v[index] for k, v in batch.items()} for m, batch in tensors.items()}


def check_dims(expected: dict[str, dict[str, int]], features: FeatureSet, where: str) -> None:
    """Raise ``FeatureMismatch`` naming every modality whose feature widths differ."""
    found = features.dims()
    problems = [
        f"{m}: model {expected[m]}, features {found.get(m, 'missing')}"
        for m in expected
        if found.get(m) != expected[m]
    ]
    if problems:
        raise FeatureMismatch(
            f"features do not match the model in {where} ({'; '.join(problems)}); assemble them "
            "with the run's own config.yaml (same modalities, encoders, temporal and functionals "
            "settings) or retrain"
        )


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def predict_probabilities(model, tensors: dict[str, dict], batch_size: int = 512) -> np.ndarray:
    import torch

    model.eval()
    size = len(next(iter(tensors.values()))["present"])
    chunks = []
    with torch.no_grad():
        for begin in range(0, size, batch_size):
            logits, _ = model(_slice(tensors, slice(begin, begin + batch_size)))
            chunks.append(logits.float().softmax(-1).cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.spec.classes), np.float32)


def fit(
    config: BaselineConfig, features: FeatureSet, labels: tuple[str, ...], run_dir: Path, seed: int
) -> tuple[object, Standardizer, dict]:
    """Train on the ``train`` rows, pick the epoch by the val metric; -> (model, scaler, summary)."""
    import torch

    from cer.feedback import progress_bar
    from evaluation.metrics import score
    from featurebaseline.models import FusionModel, ModelSpec, auxiliary_loss

    seed_everything(seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    accelerator = _accelerator(config)
    device = str(accelerator.device) if accelerator else pick_device(config.device)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    split = features.rows["split"].to_numpy()
    train_set = features.take(np.flatnonzero(split == "train"))
    val_set = features.take(np.flatnonzero(split == "val"))
    scaler = Standardizer.fit(train_set)
    index = {name: i for i, name in enumerate(labels)}
    y_train = torch.tensor(train_set.rows["label"].map(index).to_numpy(np.int64), device=device)
    y_val = val_set.rows["label"].map(index).to_numpy()
    x_train = to_tensors(scaler.apply(train_set), device)
    x_val = to_tensors(scaler.apply(val_set), device)

    spec = ModelSpec(
        config.arm,
        config.temporal,
        config.hidden,
        config.heads,
        config.dropout,
        len(labels),
        config.max_steps,
        tuple(features.modalities),
        features.dims(),
        leader=_leader_name(config),
        token_stride=config.token_stride,
    )
    core = FusionModel(spec).to(device)
    optimizer = torch.optim.AdamW(
        core.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    weight = None
    if config.class_weights:
        counts = torch.bincount(y_train, minlength=len(labels)).float().clamp(min=1)
        weight = (counts.sum() / (len(labels) * counts)).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    nll = torch.nn.NLLLoss(weight=weight)

    state = {
        "epoch": 0,
        "best": -1.0,
        "best_epoch": 0,
        "bad": 0,
        "history": [],
        "best_weights": None,
    }
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if config.resume is not False and checkpoint.exists():
        fix = f"delete {checkpoint} or pass --no-resume to train afresh"
        saved = load_tensors(checkpoint, device, fix)
        core.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        torch.set_rng_state(saved["rng"].cpu())
        _set_numpy_rng_state(saved["np_rng"])
    model = core
    if accelerator:
        model, optimizer = accelerator.prepare(core, optimizer)
    main = rank == 0
    started = time.perf_counter()
    resumed_from = state["epoch"]
    generator = np.random.default_rng(seed + state["epoch"])
    bar = progress_bar(config.epochs, f"training {config.arm} seed {seed}", unit="epoch")
    bar.update(state["epoch"])  # resumed epochs count as done; the ETA covers the rest
    bar.disable = bar.disable or not main
    while state["epoch"] < config.epochs:
        if config.patience and state["bad"] >= config.patience:
            bar.set_postfix_str(f"early stop, best epoch {state['best_epoch']}")
            break
        epoch_started = time.perf_counter()
        model.train()
        order = torch.as_tensor(generator.permutation(len(y_train)), device=device)
        for begin in range(0, len(order), config.batch_size):
            batch = order[begin : begin + config.batch_size]
            if world > 1:
                if len(batch) < world:  # a share would be empty: every process skips it
                    continue
                batch = batch[rank::world]
            logits, aux = model(_slice(x_train, batch))
            lossf = nll if config.arm == "late" else loss_fn
            loss = lossf(logits, y_train[batch])
            extra = auxiliary_loss(aux, y_train[batch], loss_fn)
            if extra is not None:
                loss = loss + extra
            optimizer.zero_grad(set_to_none=True)
            if accelerator:
                accelerator.backward(loss)
            else:
                loss.backward()
            optimizer.step()
        state["epoch"] += 1
        if len(y_val):
            predicted = predict_probabilities(core, x_val).argmax(1)
            value = float(getattr(score(y_val, predicted, labels), config.early_stopping_metric))
        else:  # no validation split: keep the last epoch
            value = float(state["epoch"])
        state["history"].append(
            {
                "epoch": state["epoch"],
                f"val_{config.early_stopping_metric}": value,
                "seconds": time.perf_counter() - epoch_started,
            }
        )
        bar.update(1)
        bar.set_postfix({f"val_{config.early_stopping_metric}": f"{value:.3f}"}, refresh=False)
        if value > state["best"]:
            state.update(
                best=value,
                best_epoch=state["epoch"],
                bad=0,
                best_weights={k: v.detach().clone() for k, v in core.state_dict().items()},
            )
        else:
            state["bad"] += 1
        if not main:
            continue
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(
            {
                "model": core.state_dict(),
                "optimizer": optimizer.state_dict(),
                "state": state,
                "rng": torch.get_rng_state(),
                "np_rng": _numpy_rng_state(),
            },
            tmp,
        )
        tmp.replace(checkpoint)
    bar.close()
    if state["best_weights"] is not None:
        core.load_state_dict(state["best_weights"])
    seconds = time.perf_counter() - started
    epochs_here = state["epoch"] - resumed_from
    summary = {
        "device": device,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        f"best_val_{config.early_stopping_metric}": state["best"] if len(y_val) else None,
        "train_seconds": round(seconds, 3),
        "seconds_per_epoch": round(seconds / epochs_here, 4) if epochs_here else None,
        "resumed_from_epoch": resumed_from,
        "history": state["history"],
        "train_examples": len(y_train),
        "val_examples": len(y_val),
        "parameters": sum(p.numel() for p in core.parameters()),
        "processes": world,
    }
    return core, scaler, summary


def _accelerator(config: BaselineConfig):
    """An ``accelerate.Accelerator`` when launched as several processes; None otherwise."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # parameters such as the "missing" embedding get no gradient in batches where all are present
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    cpu = config.device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, kwargs_handlers=[unused])


def _leader_name(config: BaselineConfig) -> str:
    from featurebaseline.config import MODALITY_NAMES

    return MODALITY_NAMES[config.leader.upper()]


def save_model(model, scaler: Standardizer, labels: tuple[str, ...], run_dir: Path) -> None:
    import torch

    folder = run_dir / "model"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "spec": model.spec.to_dict(),
            "state": model.state_dict(),
            "scaler": {
                name: {
                    part: tuple(torch.from_numpy(a) for a in pair) for part, pair in parts.items()
                }
                for name, parts in scaler.stats.items()
            },
            "labels": list(labels),
        },
        folder / "model.pt",
    )


def load_model(run_dir: str | Path, features: FeatureSet | None = None, device: str = "cpu"):
    """-> (model, scaler, labels); with ``features``, their dimensions are checked first."""

    from featurebaseline.models import FusionModel, ModelSpec

    path = Path(run_dir) / "model" / "model.pt"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} has no model/model.pt; point at a folder written by `cer baseline train`"
        )
    saved = load_tensors(path, device, "retrain the run with `cer baseline train`")
    spec = ModelSpec(**{**saved["spec"], "modalities": tuple(saved["spec"]["modalities"])})
    if features is not None:
        check_dims(spec.dims, features, str(run_dir))
    model = FusionModel(spec).to(device)
    model.load_state_dict(saved["state"])
    stats = {
        name: {part: tuple(t.cpu().numpy() for t in pair) for part, pair in parts.items()}
        for name, parts in saved["scaler"].items()
    }
    return model, Standardizer(stats), tuple(saved["labels"])
