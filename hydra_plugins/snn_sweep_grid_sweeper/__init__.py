"""snn_sweep's grid sweeper: Hydra's basic sweeper with every job's config checked first."""
