"""Start or join Ray the same way in every job, test and CLI command.

`init_ray()` joins an existing cluster when an address is given or `RAY_ADDRESS` is set (as it is
for a driver started by `ray job submit`); otherwise it starts a local instance with an explicit
number of logical CPUs. Ray Data's read and map tasks need CPUs beside the tasks or training
workers that consume them: with 2 logical CPUs (a 2-core CI machine) such a pipeline hangs, so
the local default is at least 4 logical CPUs.
"""

from __future__ import annotations

import json
import math
import os

import ray

from dampeml import TF_ENV, logs
from dampeml.errors import InputError

# Environment of every Ray worker (and of this driver): what TensorFlow must see before a worker
# imports it (tf-keras, GPU memory on demand). The package itself is installed, so no PYTHONPATH.
#: Ray Train's controller polls its workers every 2 s by default, so it noticed a finished run 4-6 s
#: late: every small training (a CI run, a campaign's trial) paid that. 0.5 s costs nothing measurable
#: and the end is seen within half a second (benchmarks/README.md, "Small-run overheads").
TRAIN_POLL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
RUNTIME_ENV: dict = {"env_vars": {**TF_ENV, **TRAIN_POLL_ENV}}
MIN_LOCAL_CPUS = 4
_JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by the job manager for a submitted driver


def default_num_cpus() -> int:
    """Logical CPUs for a local instance: all cores, and never fewer than MIN_LOCAL_CPUS."""
    return max(MIN_LOCAL_CPUS, os.cpu_count() or 1)


def local_cpus(need: float = 0.0) -> int:
    """The one rule for a local Ray's logical CPUs: all cores (at least MIN_LOCAL_CPUS), and at
    least what the job needs (its workers, actors or trials with their data feeds) plus 2 spare
    for Ray Data's tasks; below that a pipeline can hang instead of failing."""
    return max(default_num_cpus(), math.ceil(need) + 2)


def init_ray(address: str | None = None, num_cpus: int | None = None, **kwargs):
    """Join the cluster at `address` (or `RAY_ADDRESS`), else start a local Ray; return its context.

    Locally: `num_cpus` logical CPUs (default `default_num_cpus()`), no dashboard; ignored when
    joining the cluster of `RAY_ADDRESS`, an error with an explicit `address`. Calling it again
    in the same process returns the running instance's context. `kwargs` go to `ray.init`.
    """
    for key, value in RUNTIME_ENV["env_vars"].items():
        os.environ.setdefault(key, value)  # for this driver too (before TensorFlow is imported)
    if not address and os.environ.get("RAY_ADDRESS"):
        # A driver started by `ray job submit` (or a shell with RAY_ADDRESS) joins that cluster:
        # a CLI's local default for num_cpus does not apply there (the nodes declare their CPUs).
        address, num_cpus = os.environ["RAY_ADDRESS"], None
    args: dict = {
        "ignore_reinit_error": True,
        "log_to_driver": True,
        "runtime_env": _runtime_env_without_job_conflicts(),
        **logs.ray_init_options(),  # the console the command line asked for (dampeml.logs)
    }
    if address:
        if num_cpus is not None:
            raise InputError("num_cpus is for a local Ray only: the cluster's nodes declare their CPUs")
        args["address"] = address
    else:
        # "local": always a new instance of our own. Without it ray.init joins whatever cluster
        # `ray start` left running on this machine, and then refuses num_cpus.
        args["address"] = "local"
        args["num_cpus"] = num_cpus if num_cpus is not None else default_num_cpus()
        args["include_dashboard"] = False
    args.update(kwargs)
    context = ray.init(**args)
    logs.quiet_ray_data()
    return context


def _runtime_env_without_job_conflicts() -> dict:
    """RUNTIME_ENV less the env vars a submitted job already sets.

    Ray refuses to merge a job's runtime env with the driver's when both set the same env var,
    even to the same value; the job's setting wins here.
    """
    env_vars = {**RUNTIME_ENV["env_vars"], **logs.worker_env()}
    try:
        job_env = json.loads(os.environ.get(_JOB_CONFIG_VAR) or "{}").get("runtime_env") or {}
    except (ValueError, AttributeError):
        job_env = {}
    for key in job_env.get("env_vars") or {}:
        env_vars.pop(key, None)
    return (
        {**RUNTIME_ENV, "env_vars": env_vars}
        if env_vars
        else {k: v for k, v in RUNTIME_ENV.items() if k != "env_vars"}
    )
