"""Optuna storages by URL (journal:/// too), opened and shown without their password.

Shared by the sweeper, the jobs it launches and the tools that read a study afterwards; it
knows nothing of any app, and imports Optuna only when a storage is opened (Hydra imports every
public module of a plugin package at start-up).
"""
import os
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Optional

JOURNAL = "journal:///"


@contextmanager
def experimental_ok() -> Iterator[None]:
    """Use Optuna's experimental APIs (heartbeats, RetryFailedTrialCallback, WilcoxonPruner,
    set_metric_names, the matplotlib plots) without their ExperimentalWarning each time."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def public_storage(storage: Any) -> Optional[str]:
    """A storage URL with any password masked, fit for result.json, logs and messages."""
    if storage is None:
        return None
    try:
        from sqlalchemy.engine import make_url
        return make_url(str(storage)).render_as_string(hide_password=True)
    except Exception:  # not an RDB URL: a string as given, an instantiated storage by type
        return storage if isinstance(storage, str) else type(storage).__name__


def trial_id(storage: Any, study_name: str, number: int) -> int:
    """The storage's id of trial `number` of a study."""
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number)


def open_storage(url: Any, **heartbeat: Any) -> Any:
    """An Optuna storage for a URL: `journal:///PATH` (PATH relative, or absolute with a
    fourth slash, as in sqlite:///) is a JournalStorage in a file, for clusters without a
    database server (a lock file beside it; fine on NFS); any other string is an RDB URL as
    Optuna takes it (sqlite:///..., postgresql+psycopg2://...), with `heartbeat`
    (heartbeat_interval, grace_period, failed_trial_callback) passed to RDBStorage; anything
    else is passed on. Workers that open an empty database at the same moment all race to
    create Optuna's schema; the losers retry."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    if not isinstance(url, str):
        return url
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL):]
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    for attempt in range(6):
        try:
            with experimental_ok():  # heartbeats
                return optuna.storages.RDBStorage(url, **heartbeat)
        except (IntegrityError, ProgrammingError):  # e.g. UniqueViolation on CREATE TYPE
            if attempt == 5:
                raise
            time.sleep(0.2 * (attempt + 1))
