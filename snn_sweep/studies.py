"""A stored Optuna study named on a command line (`--study URL`), for the aggregator and export."""
import os
from typing import Any, Optional, Sequence

from hydra_plugins.snn_sweep_optuna_sweeper.storage import JOURNAL, open_storage, public_storage


def load_study(url: str, name: Optional[str], known: Sequence[str] = (),
               name_flag: str = "--study-name") -> Any:
    """The study `name` in the storage at url (--study URL), or, with no name, the only study
    among `known` that the storage holds (else the only one it holds). ValueError with a
    one-line reason when the file is missing, the storage unreadable or the name unclear."""
    import optuna  # slow to import: only where a study is asked for

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shown = public_storage(url)
    for scheme, kind in (("sqlite:///", "sqlite"), (JOURNAL, "journal")):
        path = url[len(scheme):] if url.startswith(scheme) else None
        if path and path != ":memory:" and not os.path.isfile(path):  # it would be created
            raise ValueError(f"--study {shown}: no such {kind} file {path}")
    try:
        storage = open_storage(url)
        studies = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
    except Exception as e:
        raise ValueError(f"--study {shown}: cannot open the storage "
                         f"({' '.join(str(e).split())})") from None
    if name is None:
        candidates = [s for s in known if s in studies] or studies
        if len(candidates) != 1:
            raise ValueError(f"--study {shown}: holds studies {', '.join(studies) or 'none'}; "
                             f"pass {name_flag}")
        name = candidates[0]
    if name not in studies:
        raise ValueError(f"--study {shown}: no study named {name!r} "
                         f"(it holds: {', '.join(studies) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage)
