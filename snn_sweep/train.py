"""One training job: config -> data -> encoder -> model -> metrics.csv, result.json, checkpoint.pt.

The model, encoder, optimizer and scheduler are whatever the config's `_target_`s name
(build.py); they are built and checked once before any data is read.

`train` returns the optimized metric as a float (for Hydra's sweepers); on failure it records
`status: failed` with the reason in result.json and raises, so a sweep sees a failed job. With
`repeats=K` a job trains K seeds in sub-dirs seed_<seed>/ and its own result.json holds their
mean, std and per-seed values. An `on_epoch` callback sees every epoch's metrics and may stop the
run (a pruner): result.json then says `status: pruned` and RunPruned is raised.
"""
import copy
import io
import logging
import math
import os
import random
import statistics
import time
import traceback
from typing import Callable, Dict, List, Optional

import snntorch as snn
import torch
from tqdm import tqdm

from . import __version__
from .build import build_model, build_optimizer, build_scheduler, resolve
from .config import InputError, validate
from .data import load_splits
from .energy import PJ_PER_MAC, dense_macs
from .models import predict
from .optuna_trial import direction_for
from .rundir import (NOT_AVERAGED, RESULT, completed, completed_sibling, completed_under,
                     config_sha, copy_trained, finish, load_resume, save_resume, settings,
                     write_atomic, write_csv, write_json)
from .runner import NonFiniteLossError, Runner, keep_freed_memory, resolve_device

log = logging.getLogger(__name__)


# The augmentation's generator is seeded with seed + AUGMENT_SEED_OFFSET: a stream of its own,
# so that augmenting leaves the batch order (and the encoder's draws) as they were.
AUGMENT_SEED_OFFSET = 1_000_003


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA


class RunPruned(Exception):
    """on_epoch asked to stop: the run is recorded as pruned, not failed."""


# on_epoch(step, metrics.csv row) -> True to stop the run; step counts epochs over all seeds.
EpochCallback = Callable[[int, Dict], bool]


def train(cfg, out_dir: str, extra: Optional[Dict] = None,
          on_epoch: Optional[EpochCallback] = None) -> float:
    """Train and evaluate one configuration (cfg.repeats seeds), leaving the run-dir files in
    out_dir; returns the optimized metric (the mean over seeds)."""
    return train_result(cfg, out_dir, extra, on_epoch)["objective"]


def train_result(cfg, out_dir: str, extra: Optional[Dict] = None,
                 on_epoch: Optional[EpochCallback] = None) -> Dict:
    """train, returning the whole result.json."""
    try:
        validate(cfg)
        if cfg.trainer.threads:  # before anything computes: the whole job runs on these threads
            torch.set_num_threads(cfg.trainer.threads)
        cfg = resolve(cfg)
    except InputError as e:  # a sweep's job dir says why it failed (a resumed run's is kept)
        if os.path.isdir(out_dir) and not os.path.exists(os.path.join(out_dir, RESULT)):
            write_json(os.path.join(out_dir, RESULT),
                       {"status": "failed", "error": f"InputError: {e}"})
        raise
    if cfg.repeats == 1:
        return _train_seed(cfg, out_dir, extra, on_epoch)
    os.makedirs(out_dir, exist_ok=True)
    seeds = [cfg.seed + i for i in range(cfg.repeats)]
    result: Dict = {"status": "running", **settings(cfg), **(extra or {}), "repeats": cfg.repeats,
                    "seeds": seeds, "seed_dirs": [f"seed_{s}" for s in seeds]}
    runs: List[Dict] = []
    try:
        for i, seed in enumerate(seeds):
            seed_cfg = cfg.copy()
            seed_cfg.seed = seed
            offset = i * cfg.trainer.epochs
            step = None if on_epoch is None else (
                lambda epoch, row, offset=offset: on_epoch(offset + epoch, row))
            runs.append(_train_seed(seed_cfg, os.path.join(out_dir, f"seed_{seed}"), extra, step))
    except BaseException as e:
        result.update(status="pruned" if isinstance(e, RunPruned) else "failed",
                      error=f"seed {seeds[len(runs)]}: {type(e).__name__}: {e}")
        write_json(os.path.join(out_dir, RESULT), result)
        raise
    result.update(status="completed", **seed_statistics(runs))
    write_json(os.path.join(out_dir, RESULT), result)
    return result


def seed_statistics(runs: List[Dict]) -> Dict:
    """Mean and sample std of every numeric metric over seeds; the objective per seed too."""
    out: Dict = {}
    for key, value in runs[0].items():
        if key in NOT_AVERAGED or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        values = [float(r[key]) for r in runs]
        out[key], out[f"{key}_std"] = statistics.fmean(values), statistics.stdev(values)
    out["objective_per_seed"] = [r["objective"] for r in runs]
    return out


def _train_seed(cfg, out_dir: str, extra: Optional[Dict], on_epoch: Optional[EpochCallback]
                ) -> Dict:
    os.makedirs(out_dir, exist_ok=True)
    result: Dict = {"status": "running", **settings(cfg), **(extra or {}),
                    "config_sha": config_sha(cfg), "snn_sweep_version": __version__}
    result_path = os.path.join(out_dir, RESULT)
    done = completed(result_path, result["config_sha"])
    if done is not None:  # a relaunched sweep finishes only what is missing
        log.info("%s already holds a completed run of this config: returning its result",
                 out_dir)
        return done
    twin = completed_sibling(out_dir, result["config_sha"])
    if twin is not None:  # a grid crossing settings the model ignores (an ANN's encoder)
        path, done = twin
        log.info("job %s already trained this config (settings this model ignores differ): "
                 "not training it again", path)
        result.update({k: v for k, v in done.items() if k not in result},
                      status="duplicate", duplicate_of=path)
        write_json(result_path, result)
        return result
    reused = completed_under(cfg.trainer.reuse, out_dir, result["config_sha"])
    if reused is not None:  # trainer.reuse: trained before, elsewhere
        path, done = reused
        log.info("%s holds a completed run of this config (trainer.reuse): copying it, not "
                 "training it again", path)
        copy_trained(path, out_dir)
        result = {**done, **{k: v for k, v in result.items() if k != "snn_sweep_version"},
                  "status": "completed", "reused_from": path}
        finish(out_dir, result)
        return result
    snn.SpikingNeuron.instances.clear()  # snnTorch's global neuron registry outlives runs
    try:
        _train(cfg, out_dir, result, on_epoch)
    except RunPruned:
        result["status"] = "pruned"
        finish(out_dir, result)
        raise
    except BaseException as e:  # resume.pt stays: trainer.resume=true goes on from it
        result.update(status="failed", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=5))
        write_json(result_path, result)
        raise
    finally:
        snn.SpikingNeuron.instances.clear()
    finish(out_dir, result)
    return result


def _train(cfg, out_dir: str, result: Dict, on_epoch: Optional[EpochCallback]) -> None:
    result["threads"] = torch.get_num_threads()  # part of what makes a run reproducible
    device = resolve_device(cfg.trainer.device)
    if device.type == "cpu":
        keep_freed_memory()
    data = load_splits(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg)
    model.to(device)
    augment_gen = torch.Generator().manual_seed(cfg.seed + AUGMENT_SEED_OFFSET)
    runner = Runner(cfg, model, device, augment_gen)
    steps = runner.steps
    macs = dense_macs(model, runner.example(data.train_x[:1]))
    n_train, bs = len(data.train_x), cfg.data.batch_size
    batches = math.ceil(n_train / bs)
    opt = build_optimizer(cfg, model.parameters())
    sched = build_scheduler(cfg, opt, cfg.trainer.epochs * batches)
    gen = torch.Generator().manual_seed(cfg.seed)
    rows: List[Dict] = []
    train_time = 0.0
    # The epoch the validation set selects: its row and weights (test and checkpoint use them).
    best: Optional[Dict] = None
    state = load_resume(out_dir, result["config_sha"]) if cfg.trainer.resume else None
    if state is not None:  # everything the next epoch depends on, as it was
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        gen.set_state(state["batch_order_rng"])
        if "augment_rng" in state:  # absent from a resume.pt written before augment existed
            augment_gen.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        rows, train_time, best = state["rows"], state["train_time_s"], state["best"]
        log.info("resuming after epoch %d of %s", len(rows), out_dir)
    log.info("model=%s encoder=%s neuron=%s timesteps=%s on %s: %d train / %d val / %d test, "
             "%d parameters", result["model"], result["encoder"], result["neuron"], steps, device,
             n_train, len(data.val_x), len(data.test_x), n_params(model))
    patience = cfg.trainer.early_stopping_patience
    for epoch in range(len(rows) + 1, cfg.trainer.epochs + 1):
        if patience and best is not None and epoch - best["epoch"] > patience:
            break  # a resumed run that had already stopped early
        model.train()
        perm = torch.randperm(n_train, generator=gen)
        loss_sum, correct = 0.0, 0
        t0 = time.perf_counter()
        bar = tqdm(range(batches), desc=f"epoch {epoch}/{cfg.trainer.epochs}", leave=False,
                   disable=not cfg.trainer.progress, unit="batch")
        for b in bar:
            idx = perm[b * bs:(b + 1) * bs]
            y = data.train_y[idx].to(device)
            loss, spk, mem = runner.train_step(opt, sched, data.train_x[idx], y,
                                               f"epoch {epoch}, batch {b + 1}")
            with torch.no_grad():
                loss_sum += loss.item() * len(y)
                correct += int((predict(runner.readout, spk, mem) == y).sum())
            if b % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        val_loss, val_acc, rec = runner.evaluate_spiking(data.val_x, data.val_y, macs)
        row = {"epoch": epoch, "train_loss": loss_sum / n_train, "train_acc": correct / n_train,
               "val_loss": val_loss, "val_acc": val_acc, "epoch_time_s": epoch_time}
        if steps is not None:
            # On the validation set, so that tuning for energy never looks at the test set.
            rates = rec.stats(len(data.val_x), steps)
            row.update({("" if k.startswith("firing_rate") else "val_") + k: v
                        for k, v in rates.items()})
        else:
            row["val_energy_pj_per_sample"] = sum(macs) * PJ_PER_MAC
        rows.append(row)
        if best is None or better(cfg.optimized_metric, row[cfg.optimized_metric],
                                  best["row"][cfg.optimized_metric]):
            best = {"epoch": epoch, "row": row, "model": copy.deepcopy(model.state_dict())}
        write_csv(os.path.join(out_dir, "metrics.csv"), rows)
        save_resume(out_dir, {
            "config_sha": result["config_sha"], "model": model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched and sched.state_dict(),
            "batch_order_rng": gen.get_state(), "augment_rng": augment_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(), "rows": rows, "train_time_s": train_time,
            "best": best})
        log.info("epoch %d: train_loss %.4f train_acc %.4f val_loss %.4f val_acc %.4f (%.1fs)",
                 epoch, row["train_loss"], row["train_acc"], val_loss, val_acc, epoch_time)
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(f"validation loss is {val_loss} after epoch {epoch}")
        if on_epoch is not None and on_epoch(epoch, row):
            result.update(_val_fields(cfg, row), epochs=epoch, pruned_epoch=epoch,
                          train_time_s=train_time)
            log.info("pruned after epoch %d (%s=%.4f)", epoch, cfg.optimized_metric,
                     row[cfg.optimized_metric])
            raise RunPruned(f"pruned after epoch {epoch}")
        if patience and epoch - best["epoch"] >= patience:
            log.info("early stop after epoch %d: no better %s since epoch %d", epoch,
                     cfg.optimized_metric, best["epoch"])
            break

    model.load_state_dict(best["model"])  # the test set sees the selected weights only
    t0 = time.perf_counter()
    test_loss, test_acc, rec = runner.evaluate_spiking(data.test_x, data.test_y, macs)
    eval_time = time.perf_counter() - t0
    result.update(
        status="completed",
        **_val_fields(cfg, best["row"]),
        best_epoch=best["epoch"],
        test_acc=test_acc, test_loss=test_loss,
        epochs=len(rows),
        stopped_early=len(rows) < cfg.trainer.epochs,
        train_time_s=train_time,
        train_samples_per_s=n_train * len(rows) / train_time,
        eval_samples_per_s=len(data.test_x) / eval_time,
        n_params=n_params(model),
        macs_per_sample=sum(macs),
        ann_energy_pj_per_sample=sum(macs) * PJ_PER_MAC,
    )
    if steps is not None:
        result.update(rec.stats(len(data.test_x), steps))
    else:
        result["energy_pj_per_sample"] = result["ann_energy_pj_per_sample"]
    if cfg.trainer.checkpoint:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        write_atomic(os.path.join(out_dir, "checkpoint.pt"), buf.getvalue())
    log.info("test_acc %.4f test_loss %.4f; %s=%.4f", test_acc, test_loss,
             cfg.optimized_metric, result["objective"])


def better(metric: str, value: float, than: float) -> bool:
    """value beats `than` in the direction the metric is optimized (optuna_trial.direction_for:
    accuracy up, loss down)."""
    return value > than if direction_for(metric) == "maximize" else value < than


def _val_fields(cfg, row: Dict) -> Dict:
    """result.json's objective and validation metrics from one epoch's metrics.csv row."""
    return {"objective": row[cfg.optimized_metric],
            **{k: v for k, v in row.items() if k.startswith("val_")}}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
