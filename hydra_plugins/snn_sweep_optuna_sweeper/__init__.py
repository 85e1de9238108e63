"""An Optuna sweeper for any Hydra app: hydra-optuna-sweeper that hands each job its trial."""
