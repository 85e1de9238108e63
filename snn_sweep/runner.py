"""The training step and evaluation, shared by the trainer and the benchmark.

Batches through the augmentation (training only), the encoder and the model, the readout's
loss and prediction."""
import ctypes
import sys
from functools import partial
from typing import List, Optional

import torch

from .build import build_augment, build_encoder
from .config import Precision, effective_timesteps, model_settings
from .errors import InputError, NonFiniteLossError
from .energy import Recorder
from .models import predict, readout_loss

EVAL_ROWS = 6400  # evaluation batch cap on the CPU, in (timestep x sample) rows


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


class Runner:
    """Feeds batches through encoder and model; owns nothing but the wiring. An ANN's logits
    [B, K] become a 1-step "membrane" [1, B, K], so one readout/loss code path serves every
    model. The config's augmentation, if any, draws from augment_generator (torch's global
    generator when None) and sees the training batches only."""

    def __init__(self, cfg, model, device, augment_generator: Optional[torch.Generator] = None):
        self.cfg, self.model, self.device = cfg, model, device
        self.steps = effective_timesteps(cfg)
        self.readout = model_settings(cfg.model).readout
        self.encode = build_encoder(cfg) if self.steps is not None else None
        self.bf16 = cfg.trainer.precision == Precision.bf16
        augment = build_augment(cfg)
        self.augment = None if augment is None else partial(augment, generator=augment_generator)

    def forward(self, x):
        x = x.to(self.device, non_blocking=True)
        if not self.bf16:
            return self.run_model(x)
        with torch.autocast(self.device.type, torch.bfloat16):
            spk, mem = self.run_model(x)
        # the loss in float32, whatever a model returns under autocast
        return None if spk is None else spk.float(), mem.float()

    def run_model(self, x):
        if self.steps is None:
            return None, self.model(x).unsqueeze(0)
        return self.model(self.encode(x, num_steps=self.steps))

    def example(self, x: torch.Tensor) -> torch.Tensor:
        """One dense step of one sample x [1, C, H, W], for counting MACs."""
        x = x.to(self.device)
        return x.unsqueeze(0) if self.steps is not None else x

    def train_step(self, opt, sched, x, y, where: str):
        """One optimizer step on the batch (x, y): augmentation, forward, the readout's loss
        (NonFiniteLossError, naming `where`, if it is not finite), backward, step, and the
        schedule's step. Returns (loss, spk, mem)."""
        if self.augment is not None:
            x = self.augment(x.to(self.device, non_blocking=True))
        spk, mem = self.forward(x)
        loss = readout_loss(self.readout, spk, mem, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at {where}: the run diverged (optimizer.lr="
                f"{self.cfg.optimizer.get('lr')}); try a smaller learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return loss, spk, mem

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
        total_loss, correct, n = 0.0, 0, len(xs)
        bs = self.eval_batch_size()
        for i in range(0, n, bs):
            y = ys[i:i + bs].to(self.device)
            spk, mem = self.forward(xs[i:i + bs])
            total_loss += float(readout_loss(self.readout, spk, mem, y)) * len(y)
            correct += int((predict(self.readout, spk, mem) == y).sum())
        return total_loss / n, correct / n

    def evaluate_spiking(self, xs, ys, macs: List[int]):
        """evaluate, and the spiking statistics of the run (energy.Recorder.stats)."""
        with Recorder(self.model, macs) as rec:
            loss, acc = self.evaluate(xs, ys)
        return loss, acc, rec
