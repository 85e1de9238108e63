"""`python -m snn_sweep [overrides]`: compose the config and train one run (or a sweep with -m)."""
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from .config import InputError, register_configs
from .train import NonFiniteLossError, train

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> float:
    try:
        return train(cfg, HydraConfig.get().runtime.output_dir)
    except (InputError, NonFiniteLossError) as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on
        sys.exit(f"error: {e}")  # one line, exit status 1, no traceback


if __name__ == "__main__":
    main()
