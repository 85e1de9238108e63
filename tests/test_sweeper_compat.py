"""Our Optuna sweeper as a drop-in for hydra-optuna-sweeper: a small Hydra app of the kind users
bring (tests/sweeper_apps/app.py, no snn_sweep in it) is swept once with `hydra/sweeper=optuna`
and once with `hydra/sweeper=snn_sweep_optuna`, side by side, on the behaviours upstream
documents; both must end alike (exit status, trial states, parameters where the sampler is
deterministic, optimization_results.yaml). Where ours differs on purpose (see
optuna_trial_sweeper.py), only ours is checked. Also pinned here: the private parts of
hydra-optuna-sweeper that ours builds on (it has no public API for them), and that neither
sweeper plugin needs Hydra's private modules or (the Optuna one) snn_sweep."""
import importlib.util
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
import pytest
import yaml

pytestmark = pytest.mark.slow  # subprocess sweeps: make test runs them, pytest alone does not

APP = Path(__file__).resolve().parent / "sweeper_apps" / "app.py"
SWEEPERS = {"upstream": "optuna", "ours": "snn_sweep_optuna"}
GRID = ["hydra/sweeper/sampler=grid", "x=range(0,4)", "y=choice(0,1)"]  # 8 points
# What ours adds to upstream's settings (pruning, heartbeats, max_trials, the objectives check);
# the rest must be upstream's.
OURS_ONLY = {"pruner", "heartbeat_interval", "grace_period", "retry_failed_trials", "max_trials",
             "objectives", "allow_changes", "not_in_study"}


@dataclass
class Run:
    rc: int
    out: str  # stdout and stderr
    trials: List[optuna.trial.FrozenTrial]
    results: Optional[Dict[str, Any]]  # optimization_results.yaml
    sweep_dir: Path

    def states(self) -> List[str]:
        return [t.state.name for t in self.trials]

    def points(self) -> List[tuple]:
        return [(t.number, t.state.name, t.params) for t in self.trials]


class Sweeps:
    """Sweeps of the app under tmp_path, each study in its own sqlite file in db_dir."""

    def __init__(self, tmp_path: Path, db_dir: Path) -> None:
        self.tmp_path, self.db_dir = tmp_path, db_dir

    def _start(self, name: str, sweeper: str, args: List[str]) -> subprocess.Popen:
        folder = self.tmp_path / name
        folder.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        return subprocess.Popen(
            [sys.executable, str(APP), "-m", f"hydra/sweeper={sweeper}",
             f"hydra.sweeper.storage={self.db(name)}", "hydra.sweeper.study_name=s",
             f"hydra.sweep.dir={folder / 'sweep'}", *args],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def db(self, name: str) -> str:
        return f"sqlite:///{self.db_dir / name}.db"

    def _finish(self, name: str, proc: subprocess.Popen) -> Run:
        out, _ = proc.communicate(timeout=120)
        try:
            trials = optuna.load_study(study_name="s", storage=self.db(name)).trials
        except KeyError:  # no study: the sweep stopped before creating it
            trials = []
        sweep_dir = self.tmp_path / name / "sweep"
        path = sweep_dir / "optimization_results.yaml"
        results = yaml.safe_load(path.read_text()) if path.exists() else None
        return Run(proc.returncode, out, trials, results, sweep_dir)

    def both(self, *args: str) -> Dict[str, Run]:
        """The same sweep with upstream's sweeper and ours, run at the same time."""
        procs = {k: self._start(k, s, list(args)) for k, s in SWEEPERS.items()}
        return {k: self._finish(k, p) for k, p in procs.items()}

    def ours(self, *args: str) -> Run:
        return self._finish("ours", self._start("ours", SWEEPERS["ours"], list(args)))


@pytest.fixture
def sweeps(tmp_path):
    """Studies in memory-backed /dev/shm where there is one: sqlite's fsyncs, several per
    trial, cost seconds on a busy disk."""
    shm = Path("/dev/shm")
    on_shm = shm.is_dir() and os.access(shm, os.W_OK)
    db_dir = Path(tempfile.mkdtemp(prefix="sweeper-compat-", dir=shm if on_shm else tmp_path))
    yield Sweeps(tmp_path, db_dir)
    shutil.rmtree(db_dir, ignore_errors=True)


def _app_module() -> Any:
    spec = importlib.util.spec_from_file_location("sweeper_compat_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


objectives = _app_module().objectives  # what the app returns, not a copy of it


def assert_alike(runs: Dict[str, Run]) -> None:
    """Both sweeps ended the same way: exit status, trial states, results file keys."""
    up, ours = runs["upstream"], runs["ours"]
    assert up.rc == ours.rc, f"upstream {up.rc}, ours {ours.rc}:\n{ours.out[-3000:]}"
    assert up.states() == ours.states()
    assert (up.results is None) == (ours.results is None)
    if up.results is not None:
        assert set(up.results) == set(ours.results)


def test_our_sweeper_takes_upstreams_settings_by_name(tmp_path):
    cfgs = {}
    for who, name in SWEEPERS.items():
        r = subprocess.run([sys.executable, str(APP), f"hydra/sweeper={name}", "--cfg", "hydra",
                            "--package", "hydra.sweeper"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cfgs[who] = yaml.safe_load(r.stdout)
    up, ours = cfgs["upstream"], cfgs["ours"]
    assert set(ours) - set(up) == OURS_ONLY
    assert {k: v for k, v in ours.items() if k not in OURS_ONLY | {"_target_"}} == \
        {k: v for k, v in up.items() if k != "_target_"}
    assert ours["_target_"].startswith("hydra_plugins.snn_sweep_optuna_sweeper.")


def test_grid_sweep_runs_every_point_once_and_ends_normally(sweeps):
    runs = sweeps.both(*GRID, "hydra.sweeper.n_trials=10")  # more trials than points
    assert_alike(runs)
    up, ours = runs["upstream"], runs["ours"]
    assert ours.rc == 0 and "Traceback" not in ours.out
    assert ours.points() == up.points()  # the grid's order is fixed, so the points too
    assert len({tuple(sorted(t.params.items())) for t in ours.trials}) == len(ours.trials) == 8
    assert ours.results == up.results

    again = sweeps.ours(*GRID, "hydra.sweeper.n_trials=10")  # grid done
    assert again.rc == 0 and "Traceback" not in again.out
    assert len([ln for ln in again.out.splitlines() if "nothing left to run" in ln]) == 1
    assert again.points() == ours.points() and again.results == ours.results


def test_a_continued_grid_runs_only_the_points_left(sweeps):
    first = sweeps.ours(*GRID, "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=3")
    assert first.rc == 0 and first.states() == ["COMPLETE"] * 5
    # every job fails now, the last one too: its tell is where GridSampler stops the study
    rest = sweeps.ours(*GRID, "hydra.sweeper.n_trials=10", "hydra.sweeper.n_jobs=3",
                       "fail_x=[0,1,2,3]", "hydra.sweeper.max_failure_rate=1.0",
                       "hydra.sweeper.allow_changes=true")  # fail_x: not the study's first task
    assert rest.rc == 0 and "Traceback" not in rest.out and "nothing left to run" in rest.out
    assert rest.states() == ["COMPLETE"] * 5 + ["FAIL"] * 3
    points = sorted((t.params["x"], t.params["y"]) for t in rest.trials)
    assert points == sorted(itertools.product(range(4), range(2)))  # each point once
    assert rest.results == first.results


def test_max_trials_caps_the_study_over_its_sweeps(sweeps):
    """A sweep relaunched as it was (a killed one, make tune-recipes RESUME=1) runs only the
    trials its study lacks; a failed trial counts, as a finished one."""
    args = ["x=range(0,4)", "y=choice(0,1)", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.max_trials=5", "fail_x=[3]", "hydra.sweeper.max_failure_rate=1.0"]
    first = sweeps.ours(*args)
    assert first.rc == 0 and len(first.trials) == 3
    second = sweeps.ours(*args)
    assert second.rc == 0 and len(second.trials) == 5
    assert second.trials[:3] == first.trials
    third = sweeps.ours(*args)
    assert third.rc == 0 and "holds 5 finished trials (max_trials=5): nothing left to run" \
        in third.out and third.trials == second.trials and third.results == second.results


def test_two_objectives_give_upstreams_pareto_front(sweeps):
    runs = sweeps.both(*GRID, "returns=2", "hydra.sweeper.direction=[minimize,minimize]")
    assert_alike(runs)
    up, ours = runs["upstream"], runs["ours"]
    assert ours.rc == 0 and ours.states() == ["COMPLETE"] * 8
    assert all(len(t.values) == 2 for t in ours.trials)
    assert ours.results == up.results and set(ours.results) == {"name", "solutions"}
    assert len(ours.results["solutions"]) > 1


def test_three_objectives_and_a_wrong_number_of_values(sweeps):
    # x=1 returns two values for three directions: FAIL, one in each of two batches of 2,
    # which max_failure_rate=0.5 lets pass. (Upstream crashes if the grid's last trial fails:
    # Optuna's fixed grid order ends on x=2.)
    runs = sweeps.both(*GRID, "returns=3", "short_x=[1]",
                       "hydra.sweeper.direction=[minimize,minimize,maximize]",
                       "hydra.sweeper.max_failure_rate=0.5")
    assert_alike(runs)
    up, ours = runs["upstream"], runs["ours"]
    assert ours.rc == 0 and ours.points() == up.points()
    assert [t.state.name == "FAIL" for t in ours.trials] == \
        [t.params["x"] == 1 for t in ours.trials]
    assert all(len(t.values) == 3 for t in ours.trials if t.values)
    assert ours.results == up.results and len(ours.results["solutions"]) > 1
    why = [ln for ln in ours.out.splitlines() if "failed: the job returned" in ln]
    assert len(why) == 2 and all("(2 values for 3 directions)" in ln for ln in why)


def test_params_in_the_config_fixed_params_custom_search_space_and_batches(sweeps):
    # conf/fixed.yaml: x swept, y fixed; `returns` fixed on the command line; z drawn by
    # space.configure around x; 5 trials asked 2 at a time
    runs = sweeps.both("--config-name", "fixed", "returns=1", "hydra.sweeper.n_trials=5",
                       "hydra.sweeper.n_jobs=2",
                       "hydra.sweeper.custom_search_space=space.configure")
    assert_alike(runs)
    batches = {k: re.findall(r"Launching (\d+) jobs", r.out) for k, r in runs.items()}
    assert batches["ours"] == batches["upstream"] == ["2", "2", "1"]
    dirs = {k: sorted(p.name for p in r.sweep_dir.iterdir() if p.is_dir())
            for k, r in runs.items()}
    assert dirs["ours"] == dirs["upstream"]
    fixed = {k: [{a: t.user_attrs[a] for a in ("y", "returns")} for t in r.trials]
             for k, r in runs.items()}
    assert fixed["ours"] == fixed["upstream"] == [{"y": "1", "returns": "1"}] * 5
    for run in runs.values():
        assert run.rc == 0 and run.states() == ["COMPLETE"] * 5
        for t in run.trials:
            x, z = t.params["x"], t.params["z"]
            assert set(t.params) == {"x", "z"} and abs(z - x) <= 0.5
            assert t.value == pytest.approx(objectives(x, 1, z)[0])  # the job got y and z
        assert set(run.results["best_params"]) == {"x", "z"}


def test_a_batch_over_max_failure_rate_ends_the_sweep(sweeps):
    # one batch of 4 grid points, one of which fails: 0.25 > 0.2
    runs = sweeps.both(*GRID[:2], "y=choice(0)", "fail_x=[2]", "hydra.sweeper.n_jobs=4",
                       "hydra.sweeper.max_failure_rate=0.2")
    assert_alike(runs)
    ours = runs["ours"]
    assert ours.rc != 0 and ours.results is None
    assert ours.points() == runs["upstream"].points()
    assert [t.state.name == "FAIL" for t in ours.trials] == \
        [t.params["x"] == 2 for t in ours.trials]


def test_objectives_are_what_the_app_returns_and_its_config_names():
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.utils import execution_whitelist
    from omegaconf import OmegaConf

    from hydra_plugins.snn_sweep_optuna_sweeper._impl import SweepError, TrialSweeperImpl, _values
    from snn_sweep.callbacks import HYDRA_TARGETS

    ok = lambda value: JobReturn(status=JobStatus.COMPLETED, _return_value=value)  # noqa: E731
    assert _values(ok((1, 2.5, 3)), 3) == _values(ok([1, 2.5, 3]), 3) == [1.0, 2.5, 3.0]
    for value, why in [((1.0, 2.0), "(2 values for 3 directions)"), ("abc", "not 3 finite"),
                       ((1.0, float("inf"), 0.0), "not 3 finite numbers")]:
        with pytest.raises(ValueError, match=re.escape(why)):
            _values(ok(value), 3)

    def check(config: dict, directions: List[str],
              objectives: Optional[str] = "snn_sweep.objectives.sweep_objectives"
              ) -> Optional[List[str]]:
        with execution_whitelist(list(HYDRA_TARGETS)):  # as snn_sweep's hydra.main allows it
            impl = TrialSweeperImpl(sampler=None, direction=directions, storage=None,
                                    study_name=None, n_trials=1, n_jobs=1, max_failure_rate=0.0,
                                    custom_search_space=None, params=None,
                                    objectives=objectives)
        impl.config = OmegaConf.create(config)
        return impl._check(directions)

    three = ["minimize", "maximize", "minimize"]
    assert check({}, three) is None  # any app: its objectives have no names here
    assert check({"pareto_metric": "val_energy_pj_per_sample"}, three) is None
    assert check({"optimized_metric": "val/acc_best"}, three[:2]) is None  # a name not ours
    ours = {"optimized_metric": "val_acc", "pareto_metric": "val_energy_pj_per_sample"}
    assert check(ours, ["maximize", "minimize"]) == list(ours.values())
    assert check(ours, ["minimize"] * 3, objectives=None) is None  # no objectives: no check
    for config, directions, message in [
            ({"optimized_metric": "val_loss"}, ["maximize"], "needs hydra.sweeper.direction"),
            ({**ours, "pareto_metric": None}, ["maximize", "minimize"],
             "two directions need pareto_metric"),
            (ours, ["maximize", "minimize", "minimize"], "has 3 entries")]:
        with pytest.raises(SweepError, match=message):
            check(config, directions)


def test_the_private_upstream_api_ours_builds_on_is_unchanged():
    """Our loop (hydra_plugins/snn_sweep_optuna_sweeper/_impl.py) subclasses upstream's private
    OptunaSweeperImpl and calls its create_params_from_overrides; upstream has no public
    equivalent. An upstream release that renames or reshapes them fails here, naming what."""
    import inspect

    from hydra_plugins.hydra_optuna_sweeper import _impl as upstream
    from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper

    impl = upstream.OptunaSweeperImpl
    expected = {
        impl.__init__: ["self", "sampler", "direction", "storage", "study_name", "n_trials",
                        "n_jobs", "max_failure_rate", "custom_search_space", "params"],
        impl.setup: ["self", "hydra_context", "task_function", "config"],
        impl._get_directions: ["self"],
        impl._process_searchspace_config: ["self"],
        impl._parse_sweeper_params_config: ["self"],
        impl._to_grid_sampler_choices: ["distribution"],
        impl._configure_trials: ["self", "trials", "search_space_distributions",
                                 "fixed_params", "fixed_overrides"],
        upstream.create_params_from_overrides: ["arguments"]}
    changed = [f"{f.__qualname__}{inspect.signature(f)} (we call it with {', '.join(names)})"
               for f, names in expected.items()
               if list(inspect.signature(f).parameters) != names]
    assert not changed, f"hydra_plugins.hydra_optuna_sweeper._impl changed: {'; '.join(changed)}"

    public = optuna_sweeper.OptunaSweeper(
        sampler={"_target_": "optuna.samplers.RandomSampler"}, direction="minimize",
        storage=None, study_name=None, n_trials=1, n_jobs=1, max_failure_rate=0.0,
        custom_search_space=None, params=None)
    assert isinstance(public.sweeper, impl), "OptunaSweeper no longer keeps its impl in .sweeper"
    assert isinstance(public.sweeper.sampler, optuna.samplers.RandomSampler)
    missing = {"sampler", "direction", "storage", "study_name", "n_trials", "n_jobs",
               "max_failure_rate", "params", "job_idx"} - set(vars(public.sweeper))
    assert not missing, f"OptunaSweeperImpl no longer sets {sorted(missing)}"
    space, fixed, deletes = upstream.create_params_from_overrides(
        ["x=choice(1,2)", "y=3", "~z", "w=tag(log, interval(1e-4, 1e-1))"])
    assert (space, fixed, deletes) == (
        {"x": optuna.distributions.CategoricalDistribution((1, 2)),
         "w": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}, {"y": "3"}, ["~z"])


def test_the_sweeper_plugins_need_no_private_hydra_and_the_optuna_one_no_snn_sweep():
    code = ("import sys\n"
            "from hydra_plugins.snn_sweep_optuna_sweeper import _impl, optuna_trial_sweeper\n"
            "from hydra_plugins.snn_sweep_grid_sweeper import grid_sweeper\n"
            "app = sorted(m for m in sys.modules if m.split('.')[0] == 'snn_sweep')\n"
            "private = sorted(f'{k}: {v.__module__}' for k, v in vars(grid_sweeper).items()\n"
            "                 if str(getattr(v, '__module__', '')).startswith('hydra._'))\n"
            "print(app, private)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "[]"], r.stdout
    from hydra_plugins.snn_sweep_grid_sweeper.grid_sweeper import GridSweeper
    assert not [c for c in GridSweeper.__mro__ if c.__module__.startswith("hydra._")]
