"""`python -m snn_sweep [overrides]`: compose the config and train one run (or a sweep with -m)."""
import sys
from typing import List

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from .config import InputError, register_configs
from .optuna_trial import trial_info
from .train import NonFiniteLossError, train

register_configs()
try:
    # Hydra finds plugins by listing the hydra_plugins namespace, which misses a package of an
    # editable install; registering it (public API) makes conf/hparams_search work either way.
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scan first: the scan re-executes the modules it finds
    from hydra_plugins.snn_sweep_optuna_sweeper.optuna_trial_sweeper import OptunaTrialSweeper

    plugins.register(OptunaTrialSweeper)
except ImportError:  # installed without it: everything but the Optuna presets still works
    pass


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> float:
    hc = HydraConfig.get()
    # In an Optuna sweep the sweeper passes the trial number and study in env_set.
    extra = trial_info(hc.job.env_set)
    try:
        return train(cfg, hc.runtime.output_dir, extra)
    except (InputError, NonFiniteLossError) as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on
        sys.exit(f"error: {e}")  # one line, exit status 1, no traceback


def flags_first(argv: List[str]) -> List[str]:
    """Move -m/--multirun before the overrides. Hydra parses its command line with argparse,
    which takes overrides in one run only, so the card's `model=snn encoder=rate -m
    timesteps=1,10,25` would fail with "unrecognized arguments: timesteps=1,10,25"."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in flags]


if __name__ == "__main__":
    sys.argv = flags_first(sys.argv)
    main()
