"""snn_sweep's Optuna sweeper: hydra-optuna-sweeper plus trial numbers in each job's result.json."""
