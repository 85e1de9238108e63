"""Sweep and run dirs into tables and plots: `load(dirs)` from Python, `main` as the command."""
import matplotlib

matplotlib.use("Agg")  # files only, no display; before any submodule imports pyplot

from .cli import aggregate, main  # noqa: E402
from .errors import AggregateError  # noqa: E402
from .jobs import find_jobs  # noqa: E402
from .plots import plot_learning_curves, plot_vs_energy, plot_vs_timesteps  # noqa: E402
from .runs import Runs, load, mark_duplicates  # noqa: E402
from .stats import (SUMMARY_METRICS, summarize, summary_markdown, versus_ann,  # noqa: E402
                    versus_markdown)
from .study import ANN_LINE  # noqa: E402

__all__ = ["ANN_LINE", "AggregateError", "Runs", "SUMMARY_METRICS", "aggregate", "find_jobs",
           "load", "main", "mark_duplicates", "plot_learning_curves", "plot_vs_energy",
           "plot_vs_timesteps", "summarize", "summary_markdown", "versus_ann", "versus_markdown"]
