"""snn_sweep: Hydra sweeps of spiking networks (snnTorch) against ANN baselines on MNIST."""
__version__ = "0.1.0"
