"""snn_sweep: Hydra sweeps of spiking networks (snnTorch) against ANN baselines on MNIST."""
__version__ = "0.1.0"


def __getattr__(name):  # load_run imports torch: only when asked for, not for the aggregator
    if name == "load_run":
        from .load import load_run
        return load_run
    raise AttributeError(f"module 'snn_sweep' has no attribute {name!r}")
