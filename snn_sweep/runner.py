"""The training step and evaluation, shared by the trainer and the benchmark.

Batches through the augmentation (training only), the encoder and the model, the readout's
loss and prediction."""
import copy
import ctypes
import signal
import sys
import threading
from contextlib import contextmanager
from functools import partial
from typing import List, Optional

import torch

from .build import build_augment, build_encoder
from .config import Precision, effective_timesteps, model_settings
from .errors import InputError, NonFiniteLossError
from .encoders import frame_counts
from .energy import Recorder, outermost
from .models import predict, readout_loss

EVAL_ROWS = 6400  # evaluation batch cap on the CPU, in (timestep x sample) rows
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; SLURM's preemption and time-out


class RunInterrupted(Exception):
    """SIGINT or SIGTERM arrived: the run stopped at a batch boundary, resume.pt kept."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


_received: List[int] = []  # the stop signal caught, if any, while `interruptible` is active


def check_interrupt() -> None:
    """At a batch boundary: raise RunInterrupted if a stop signal came since."""
    if _received:
        raise RunInterrupted(_received[0])


@contextmanager
def interruptible():
    """SIGINT and SIGTERM only flag the run (check_interrupt ends it at the next batch): a
    second one ends the process at once, as it would have. Outside the main thread (where
    Python delivers signals) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def flag(signum, frame):
        if _received:  # impatient: the old way out
            signal.signal(signum, signal.SIG_DFL if signum != signal.SIGINT
                          else signal.default_int_handler)
            signal.raise_signal(signum)
        _received.append(signum)
    before = {s: signal.signal(s, flag) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        _received.clear()


def keep_freed_memory() -> None:
    """Keep freed blocks in the process heap (glibc on Linux; elsewhere a no-op).

    PyTorch has no caching allocator on the CPU, and glibc returns a freed block above its
    mmap threshold to the OS at once, so every batch page-faults its activation buffers in
    anew; on 2 cores that cost more than the arithmetic of a T=25 training step
    (docs/performance.md#how-the-speed-is-obtained). Serving blocks up to 32 MB from the heap
    and trimming it only above 1 GB keeps them; the process-wide effect is the point."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (e.g. musl): leave its defaults
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)


def compile_model(model: torch.nn.Module) -> int:
    """trainer.compile: model.compile(), in place (its state_dict, hooks and train()/eval() stay
    as they are), with snn_sweep.nn's layers left out (torch.compiler.disable): they run their
    own fused kernels, and TorchDynamo would trace into the Numba ones' compiler. Returns how
    many layers were left out."""
    from . import nn as fast
    left = outermost(model, (fast.Sequential, fast.Synapses, fast.Neurons, fast.LeakyLinear,
                             fast.Dropout))
    for layer in left:
        layer.forward = torch.compiler.disable(layer.forward)
    model.compile()
    return len(left)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    count = {"cpu": 1, "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
             "mps": int(torch.backends.mps.is_available())}[device.type]
    if (device.index or 0) >= count:
        raise InputError(f"trainer.device={name!r}: this machine has "
                         f"{count or 'no'} {device.type} device(s); use trainer.device=auto or cpu")
    return device


class Tally:
    """A pass's summed loss (over samples) and correct predictions, read once at its end: on a
    CUDA device they stay there, so that the GPU never waits for the host in between (elsewhere
    on the CPU: MPS has no float64). Float64, summed as Python floats would be."""

    def __init__(self, device: torch.device):
        self.device = device if device.type == "cuda" else torch.device("cpu")
        self.loss = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)

    def add(self, loss: torch.Tensor, hits: torch.Tensor) -> None:
        """A batch's mean loss and its per-sample hits (bool)."""
        self.loss += loss.detach().reshape(()).to(self.device).double() * len(hits)
        self.correct += hits.to(self.device).sum()

    def means(self, n: int):
        """(mean loss, accuracy) over the n samples added."""
        return self.loss.item() / n, int(self.correct) / n


class Runner:
    """Feeds batches through encoder and model; owns nothing but the wiring. An ANN's logits
    [B, K] become a 1-step "membrane" [1, B, K], so one readout/loss code path serves every
    model. The config's augmentation, if any, draws from augment_generator (torch's global
    generator when None) and sees the training batches only. Event data come as integer
    frames [B, T, C, H, W]: made float on the device; an ANN sees encoders.frame_counts."""

    def __init__(self, cfg, model, device, augment_generator: Optional[torch.Generator] = None):
        self.cfg, self.model, self.device = cfg, model, device
        self.steps = effective_timesteps(cfg)
        self.readout = model_settings(cfg.model).readout
        self.encode = build_encoder(cfg) if self.steps is not None else None
        self.bf16 = cfg.trainer.precision == Precision.bf16
        augment = build_augment(cfg)
        self.augment = None if augment is None else partial(augment, generator=augment_generator)
        self.pending = None  # a GPU step's loss check, made one step later (_check_later)
        self.frames = cfg.data.get("frames") is not None

    def forward(self, x):
        x = x.to(self.device, non_blocking=True)
        if not x.is_floating_point():
            x = x.float()
        if not self.bf16:
            return self.run_model(x)
        with torch.autocast(self.device.type, torch.bfloat16):
            spk, mem = self.run_model(x)
        # the loss in float32, whatever a model returns under autocast
        return None if spk is None else spk.float(), mem.float()

    def run_model(self, x):
        if self.steps is None:
            return None, self.model(frame_counts(x) if self.frames else x).unsqueeze(0)
        return self.model(self.encode(x, num_steps=self.steps))

    def example(self, x: torch.Tensor) -> torch.Tensor:
        """One dense step of one sample x [1, C, H, W] (event data: [1, T, C, H, W]), for
        counting MACs."""
        x = x.to(self.device).float()
        if self.frames:
            x = x[:, 0] if self.steps is not None else frame_counts(x)
        return x.unsqueeze(0) if self.steps is not None else x

    def train_step(self, opt, sched, x, y, where: str):
        """One optimizer step on the batch (x, y): augmentation, forward, the readout's loss
        (NonFiniteLossError, naming `where`, if it is not finite: on a GPU raised after the
        next step, or by check_pending), backward, step, and the schedule's step. Returns
        (loss, spk, mem)."""
        if self.augment is not None:
            x = self.augment(x.to(self.device, non_blocking=True))
        spk, mem = self.forward(x)
        loss = readout_loss(self.readout, spk, mem, y)
        gpu = self.device.type == "cuda"
        if not gpu and not torch.isfinite(loss):  # elsewhere the step has run by now
            raise self.diverged(loss, where)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if gpu:
            self._check_later(loss.detach(), where)
        return loss, spk, mem

    def warm_up(self, x, y) -> None:
        """One training step's forward and backward and one evaluation forward on the batch
        (x, y), on a copy of the model with the random streams put back after: compiles the
        kernels (Numba JIT, a GPU's) before the first timed epoch and changes nothing the run
        computes. The augmentation is left out (its generator is the run's)."""
        model = self.model
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            self.model = copy.deepcopy(model)
            with torch.random.fork_rng(devices=devices):
                spk, mem = self.forward(x)
                readout_loss(self.readout, spk, mem, y.to(self.device)).backward()
                self.model.eval()
                with torch.no_grad():
                    self.forward(x)
        finally:
            self.model = model

    def diverged(self, loss: torch.Tensor, where: str) -> NonFiniteLossError:
        return NonFiniteLossError(
            f"training loss is {loss.item()} at {where}: the run diverged (optimizer.lr="
            f"{self.cfg.optimizer.get('lr')}); try a smaller learning rate")

    def _check_later(self, loss: torch.Tensor, where: str) -> None:
        """On a GPU, this step's loss check is queued (its flag copied to the host behind an
        event) and the previous step's made: waiting for this step's would leave the GPU idle
        while the host queues the next one; the previous one is done, or nearly."""
        finite = torch.isfinite(loss).to("cpu", non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        previous, self.pending = self.pending, (finite, done, loss, where)
        if previous is not None:
            self._check(previous)

    def check_pending(self) -> None:
        """The last queued check (the end of an epoch on a GPU; elsewhere nothing is queued)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self._check(pending)

    def _check(self, pending) -> None:
        finite, done, loss, where = pending
        done.synchronize()
        if not bool(finite):
            raise self.diverged(loss, where)

    def eval_batch_size(self) -> int:
        """data.eval_batch_size, capped on the CPU: past EVAL_ROWS rows (steps x samples) the
        activations outgrow the caches and evaluation slows down."""
        bs = self.cfg.data.eval_batch_size
        if self.steps and self.device.type == "cpu":
            bs = max(1, min(bs, EVAL_ROWS // self.steps))
        return bs

    @torch.no_grad()
    def evaluate(self, xs, ys):
        self.model.eval()
        n, bs = len(xs), self.eval_batch_size()
        tally = Tally(self.device)
        for i in range(0, n, bs):
            check_interrupt()
            y = ys[i:i + bs].to(self.device)
            spk, mem = self.forward(xs[i:i + bs])
            tally.add(readout_loss(self.readout, spk, mem, y), predict(self.readout, spk, mem) == y)
        return tally.means(n)

    def evaluate_spiking(self, xs, ys):
        """evaluate, and the Recorder that counted the run's workload (energy.Recorder.stats:
        NeuroBench's metrics)."""
        with Recorder(self.model) as rec:
            loss, acc = self.evaluate(xs, ys)
        return loss, acc, rec
