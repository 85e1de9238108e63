"""One seed's training loop: epochs, the validation-selected weights, the test set once, and the state resume.pt holds.

`fit` runs it in named steps (build, resume, epoch, validate, select, test); TrainingState is
everything the next epoch depends on, saved after every epoch and restored from resume.pt.
"""
import copy
import io
import logging
import math
import os
import random
import time
from typing import Callable, Dict, List, Optional

import torch
from tqdm import tqdm

from .build import build_model, build_optimizer, build_scheduler, model_spec
from .data import load_splits
from .energy import PJ_PER_MAC, dense_macs, n_params, static_metrics
from .objectives import direction_for
from .models import predict
from .record import IDENTITY_VERSION
from .rundir import CHECKPOINT, load_resume, save_resume, write_atomic, write_csv
from .errors import InputError, NonFiniteLossError
from .runner import (Runner, Tally, check_interrupt, compile_model, keep_freed_memory,
                     resolve_device)

log = logging.getLogger(__name__)

# The augmentation's generator is seeded with seed + AUGMENT_SEED_OFFSET: a stream of its own,
# so that augmenting leaves the batch order (and the encoder's draws) as they were.
AUGMENT_SEED_OFFSET = 1_000_003
CHECKPOINT_FORMAT = 2  # {"format", "model": its _target_ node, "state_dict"}; 1: a bare state dict

# on_epoch(step, metrics.csv row) -> True to stop the run; step counts epochs over all seeds.
EpochCallback = Callable[[int, Dict], bool]


class RunPruned(Exception):
    """on_epoch asked to stop: the run is recorded as pruned, not failed."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA


class TrainingState:
    """The model, optimizer, schedule and random streams, and the epochs so far: what the next
    epoch depends on. `save` writes it to resume.pt; `restore` reads it back, exactly."""

    def __init__(self, model, opt, sched, seed: int, augment_gen: torch.Generator):
        self.model, self.opt, self.sched = model, opt, sched
        self.batch_gen = torch.Generator().manual_seed(seed)
        self.augment_gen = augment_gen  # the Runner's: it draws the augmentation from it
        self.rows: List[Dict] = []
        self.train_time = 0.0
        self.best: Optional[Dict] = None  # the selected epoch: its row and weights

    def state_dict(self) -> Dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched and self.sched.state_dict(),
                "batch_order_rng": self.batch_gen.get_state(),
                "augment_rng": self.augment_gen.get_state(), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(), "rows": self.rows,
                "train_time_s": self.train_time, "best": self.best}

    def load_state_dict(self, state: Dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.batch_gen.set_state(state["batch_order_rng"])
        if "augment_rng" in state:  # absent from a resume.pt written before augment existed
            self.augment_gen.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.rows, self.train_time, self.best = state["rows"], state["train_time_s"], state["best"]

    def save(self, out_dir: str, sha: str) -> None:
        save_resume(out_dir, {"identity_version": IDENTITY_VERSION, "config_sha": sha,
                              **self.state_dict()})

    def restore(self, out_dir: str, cfg, sha: str) -> bool:
        """Load resume.pt of this run if the run dir has one; whether it did."""
        state = load_resume(out_dir, cfg, sha)
        if state is None:
            return False
        self.load_state_dict(state)
        log.info("resuming after epoch %d of %s", len(self.rows), out_dir)
        return True


def better(metric: str, value: float, than: float) -> bool:
    """value beats `than` in the direction the metric is optimized (accuracy up, loss down)."""
    return value > than if direction_for(metric) == "maximize" else value < than


def val_fields(cfg, row: Dict) -> Dict:
    """result.json's objective and validation metrics from one epoch's metrics.csv row."""
    return {"objective": row[cfg.optimized_metric],
            **{k: v for k, v in row.items() if k.startswith("val_")}}


def train_epoch(cfg, runner: Runner, state: TrainingState, data, epoch: int, device) -> Dict:
    """One pass over the training set in the state's batch order: the row's train fields."""
    state.model.train()
    n, bs = len(data.train_x), cfg.data.batch_size
    # drawn on the CPU generator whatever the device (the same order everywhere), then moved
    # beside the data (fit: on a GPU the splits are there)
    perm = torch.randperm(n, generator=state.batch_gen).to(data.train_x.device)
    tally = Tally(device)
    t0 = time.perf_counter()
    bar = tqdm(range(math.ceil(n / bs)), desc=f"epoch {epoch}/{cfg.trainer.epochs}",
               leave=False, disable=not cfg.trainer.progress, unit="batch")
    for b in bar:
        check_interrupt()  # SIGINT/SIGTERM: stop here, resume.pt holds the last epoch's end
        idx = perm[b * bs:(b + 1) * bs]
        y = data.train_y[idx].to(device)
        loss, spk, mem = runner.train_step(state.opt, state.sched, data.train_x[idx], y,
                                           f"epoch {epoch}, batch {b + 1}")
        with torch.no_grad():
            tally.add(loss, predict(runner.readout, spk, mem) == y)
        if cfg.trainer.progress and b % 20 == 0:  # loss.item() waits for a GPU
            bar.set_postfix(loss=f"{loss.item():.3f}")
    runner.check_pending()
    train_loss, train_acc = tally.means(n)  # the epoch's time includes a GPU finishing it
    return {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "epoch_time_s": time.perf_counter() - t0}


def validate(runner: Runner, data, row: Dict) -> Dict:
    """The row with the validation set's loss, accuracy and workload metrics (energy.Recorder:
    an ANN's too), on the validation set so that tuning for energy never looks at the test set."""
    val_loss, val_acc, rec = runner.evaluate_spiking(data.val_x, data.val_y)
    row = {**row, "val_loss": val_loss, "val_acc": val_acc}
    row["epoch_time_s"] = row.pop("epoch_time_s")  # metrics.csv's column order
    rates = rec.stats(len(data.val_x), runner.steps or 1)
    row.update({("" if k.startswith("firing_rate") else "val_") + k: v for k, v in rates.items()})
    return row


def wants_test(cfg, result: Dict) -> bool:
    """trainer.test: null evaluates the test set but in an Optuna trial."""
    if cfg.trainer.test is not None:
        return bool(cfg.trainer.test)
    return result.get("optuna_trial") is None


def setup(cfg, augment_gen: Optional[torch.Generator] = None):
    """(device, data, model, runner, macs) of cfg: the data on the device, the model built
    after seeding."""
    device = resolve_device(cfg.trainer.device)
    if device.type == "cpu":
        keep_freed_memory()
    data = load_splits(cfg).to(device)
    seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    runner = Runner(cfg, model, device, augment_gen)
    macs = dense_macs(model, runner.example(data.train_x[:1]))
    return device, data, model, runner, macs


def fit(cfg, out_dir: str, result: Dict, on_epoch: Optional[EpochCallback]) -> None:
    """Train cfg's model in out_dir, filling result with the selected epoch's metrics and the
    test set's; raises RunPruned when on_epoch stops it, RunInterrupted on SIGINT/SIGTERM."""
    augment_gen = torch.Generator().manual_seed(cfg.seed + AUGMENT_SEED_OFFSET)
    device, data, model, runner, macs = setup(cfg, augment_gen)
    state = TrainingState(model, None, None, cfg.seed, augment_gen)
    if cfg.trainer.compile:  # after dense_macs' one-sample call, which needs no compiling
        left = compile_model(model)
        log.info("trainer.compile: the model compiled by torch.compile%s", f", but for {left} "
                 "snn_sweep.nn layer(s), which run their own kernels" if left else "")
    state.opt = build_optimizer(cfg, model.parameters())
    batches = math.ceil(len(data.train_x) / cfg.data.batch_size)
    state.sched = build_scheduler(cfg, state.opt, cfg.trainer.epochs * batches)
    sha = result["config_sha"]
    if not (cfg.trainer.resume and state.restore(out_dir, cfg, sha)):
        state.save(out_dir, sha)  # an interrupt in epoch 1 leaves a resume.pt too
    log.info("model=%s encoder=%s neuron=%s timesteps=%s on %s: %d train / %d val / %d test, "
             "%d parameters", result["model"], result["encoder"], result["neuron"],
             runner.steps, device, len(data.train_x), len(data.val_x), len(data.test_x),
             n_params(model))
    if len(state.rows) < cfg.trainer.epochs:  # the kernels compile here, not in epoch 1
        t0 = time.perf_counter()
        bs = cfg.data.batch_size
        runner.warm_up(data.train_x[:bs], data.train_y[:bs])
        result["warmup_time_s"] = time.perf_counter() - t0
    patience = cfg.trainer.early_stopping_patience
    for epoch in range(len(state.rows) + 1, cfg.trainer.epochs + 1):
        if patience and state.best is not None and epoch - state.best["epoch"] > patience:
            break  # a resumed run that had already stopped early
        row = validate(runner, data, train_epoch(cfg, runner, state, data, epoch, device))
        state.train_time += row["epoch_time_s"]
        state.rows.append(row)
        metric = cfg.optimized_metric
        if state.best is None or better(metric, row[metric], state.best["row"][metric]):
            state.best = {"epoch": epoch, "row": row,
                          "model": copy.deepcopy(model.state_dict())}
        write_csv(os.path.join(out_dir, "metrics.csv"), state.rows)
        state.save(out_dir, sha)
        log.info("epoch %d: train_loss %.4f train_acc %.4f val_loss %.4f val_acc %.4f (%.1fs)",
                 epoch, row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"],
                 row["epoch_time_s"])
        if not math.isfinite(row["val_loss"]):
            raise NonFiniteLossError(f"validation loss is {row['val_loss']} after epoch {epoch}")
        if on_epoch is not None and on_epoch(epoch, row):
            result.update(val_fields(cfg, row), epochs=epoch, pruned_epoch=epoch,
                          train_time_s=state.train_time)
            log.info("pruned after epoch %d (%s=%.4f)", epoch, metric, row[metric])
            raise RunPruned(f"pruned after epoch {epoch}")
        if patience and epoch - state.best["epoch"] >= patience:
            log.info("early stop after epoch %d: no better %s since epoch %d", epoch, metric,
                     state.best["epoch"])
            break
    test(cfg, runner, state, data, macs, result)
    if cfg.trainer.checkpoint:
        save_checkpoint(out_dir, cfg, model)


def test(cfg, runner: Runner, state: TrainingState, data, macs: List[int], result: Dict) -> None:
    """The test set, once, on the selected epoch's weights (unless wants_test says skip it);
    result's final fields."""
    model, rows, best = state.model, state.rows, state.best
    model.load_state_dict(best["model"])
    result.update(
        status="completed",
        **val_fields(cfg, best["row"]),
        best_epoch=best["epoch"],
        epochs=len(rows),
        stopped_early=len(rows) < cfg.trainer.epochs,
        train_time_s=state.train_time,
        train_samples_per_s=len(data.train_x) * len(rows) / state.train_time,
        **static_metrics(model),  # NeuroBench's footprint, connection sparsity, n_params
        macs_per_sample=sum(macs),
        ann_energy_pj_per_sample=sum(macs) * PJ_PER_MAC,
    )
    if wants_test(cfg, result):
        result.update(test_fields(runner, data))
        log.info("test_acc %.4f test_loss %.4f; %s=%.4f", result["test_acc"],
                 result["test_loss"], cfg.optimized_metric, result["objective"])
    else:
        result["test_skipped"] = True
        log.info("the test set skipped in an Optuna trial (trainer.test=true evaluates it)")


def test_fields(runner: Runner, data) -> Dict:
    """The test set's fields of result.json on the model's present weights: loss, accuracy,
    speed, and the workload metrics (energy.Recorder: an ANN's too)."""
    t0 = time.perf_counter()
    test_loss, test_acc, rec = runner.evaluate_spiking(data.test_x, data.test_y)
    out = {"test_acc": test_acc, "test_loss": test_loss,
           "eval_samples_per_s": len(data.test_x) / (time.perf_counter() - t0)}
    out.update(rec.stats(len(data.test_x), runner.steps or 1))
    return out


def test_saved(cfg, out_dir: str, sha: str) -> Dict:
    """The test set's fields for a completed run whose test was skipped, from the resume.pt it
    kept: the selected weights and the random streams as they were when the test was due (an
    encoder draws from them), so the numbers are those the run would have recorded."""
    _, data, model, runner, _ = setup(cfg)
    state = load_resume(out_dir, cfg, sha)
    if state is None:
        raise InputError(f"trainer.test=true: {out_dir} has no resume.pt left to evaluate the "
                         f"test set from; train the run again with trainer.test=true")
    model.load_state_dict(state["best"]["model"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    return test_fields(runner, data)


def save_checkpoint(out_dir: str, cfg, model) -> None:
    """checkpoint.pt: the selected weights with the model's _target_ node, which rebuilds it
    (snn_sweep.load_run) without the config."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "model": model_spec(cfg),
                "state_dict": model.state_dict()}, buf)
    write_atomic(os.path.join(out_dir, CHECKPOINT), buf.getvalue())
