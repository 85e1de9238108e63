"""Sweep and run dirs into tables and plots: `load(dirs)` from Python, `main` as the command."""
from .cli import aggregate, main
from .errors import AggregateError
from .jobs import find_jobs
from .plots import plot_learning_curves, plot_vs_energy, plot_vs_timesteps
from .runs import Runs, load, mark_duplicates
from .stats import (SUMMARY_METRICS, summarize, summary_markdown, versus_ann,
                    versus_markdown)
from .study import ANN_LINE

__all__ = ["ANN_LINE", "AggregateError", "Runs", "SUMMARY_METRICS", "aggregate", "find_jobs",
           "load", "main", "mark_duplicates", "plot_learning_curves", "plot_vs_energy",
           "plot_vs_timesteps", "summarize", "summary_markdown", "versus_ann", "versus_markdown"]
