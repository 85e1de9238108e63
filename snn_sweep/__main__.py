"""`python -m snn_sweep [overrides]`: compose the config and train one run (or a sweep with -m)."""
import hydra
from hydra.core.hydra_config import HydraConfig

from .config import register_configs
from .train import train

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg) -> float:
    return train(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
