"""The first run-record version's config hash, frozen, so that runs made before identity_version 2 are found.

Version 1 hashed the whole resolved config less a few keys, so data.root, data.download,
trainer.device and trainer.threads were part of it, and settings added later were left out at
the value older runs had (V1_ADDED_LATER). A relaunched sweep or trainer.reuse recognises such a
run when the config, hashed as version 1 did, gives its config_sha: with the same data path as
then, and with the threads the run recorded (or none set)."""
import hashlib
import json
from typing import Any, Dict, Optional, Set

from omegaconf import OmegaConf

from .config import effective_timesteps, uses_neuron

# Settings added while version 1 was in use (config path: the value runs made before had).
V1_ADDED_LATER = {"augment": None, "model.padding": 0, "model.norm": False,
                  "trainer.precision": "fp32", "model.beta_per_neuron": False,
                  "data.frames": None, "data.cache": None}
# The trainer keys version 1 hashed (keys added since are left out by this list, not one by one).
V1_TRAINER = ("epochs", "device", "threads", "checkpoint", "early_stopping_patience",
              "precision")
# Version 1's neuron node named its snnTorch class and surrogate by name.
V1_NEURONS = {"snntorch.Leaky": "leaky", "snntorch.Synaptic": "synaptic",
              "snntorch.Lapicque": "lapicque", "snntorch.Alpha": "alpha"}
SURROGATES = "snntorch.surrogate."


def v1_neuron(node: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """A neuron node as version 1 wrote it (name, surrogate, surrogate_args); unchanged when it
    already is, None when version 1 had no such neuron."""
    if not isinstance(node, dict) or "_target_" not in node:
        return node
    grad = dict(node.get("spike_grad") or {"_target_": SURROGATES + "atan"})
    target = str(grad.pop("_target_", ""))
    if node["_target_"] not in V1_NEURONS or not target.startswith(SURROGATES):
        return None
    out = {k: v for k, v in node.items() if k not in ("_target_", "_partial_", "spike_grad",
                                                       "name")}
    return {**out, "name": V1_NEURONS[node["_target_"]], "surrogate": target[len(SURROGATES):],
            "surrogate_args": grad}


def v1_sha(cfg, threads: Optional[int]) -> Optional[str]:
    """Version 1's config_sha of cfg (resolved) run on `threads`; None where version 1 could
    not have made this run."""
    c = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    c["trainer"] = {k: v for k, v in c["trainer"].items() if k in V1_TRAINER}
    c["trainer"]["threads"] = threads
    for key in ("logger", "trusted_modules"):
        c.pop(key, None)
    for path, before in V1_ADDED_LATER.items():
        *parents, key = path.split(".")
        node = c
        for parent in parents:
            node = node[parent]
        if node.get(key, before) == before:
            node.pop(key, None)
    if cfg.model.spiking:
        c["timesteps"] = effective_timesteps(cfg)
        if not uses_neuron(cfg):
            c.pop("neuron", None)
    else:
        for key in ("encoder", "neuron", "timesteps"):
            c.pop(key, None)
    for holder in (c, c["model"]):
        if holder.get("neuron") is not None:
            holder["neuron"] = v1_neuron(holder["neuron"])
            if holder["neuron"] is None:
                return None
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def v1_shas(cfg, recorded_threads: Optional[int]) -> Set[str]:
    """The version-1 shas a run of cfg may have had: with trainer.threads as set now, unset, or
    as the old run recorded it."""
    shas = {v1_sha(cfg, t) for t in {cfg.trainer.threads, None, recorded_threads}}
    shas.discard(None)
    return shas
