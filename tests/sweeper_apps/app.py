"""A Hydra app of the kind users bring, for tests/test_sweeper_compat.py: it knows nothing of
snn_sweep and returns as many objectives of x, y, z as its config says."""
import hydra
from omegaconf import DictConfig


def objectives(x: float, y: float, z: float) -> list:
    """Three objectives that pull x and y apart, so a grid has a Pareto front of several."""
    return [(x - 1) ** 2 + (y - 2) ** 2 + z, x ** 2 + y, (x - 3) ** 2 + (y - 1) ** 2]


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig):
    if cfg.x in cfg.fail_x:
        raise ValueError(f"x={cfg.x} fails on request")
    values = objectives(float(cfg.x), float(cfg.y), float(cfg.z))[:cfg.returns]
    if cfg.x in cfg.short_x:
        values = values[:-1]  # one value fewer than the sweeper's directions
    return values[0] if cfg.returns == 1 else tuple(values)


if __name__ == "__main__":
    main()
