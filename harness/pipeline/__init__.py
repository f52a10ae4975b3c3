"""The pipeline under test (the seed's KFP pipeline) and the tools that compile and run it.

Modules, by the environment that imports them:
* dataset, task_probe: numpy/pandas or stdlib only, any role;
* compile.inspect_compiled, run_local.collect_results: pyyaml/stdlib, the harness itself;
* components, pipeline, compile (CLI): any kfp 2.x (the pipeline role compiles with its kfp);
* run_local (CLI), kfp_local_seams: the runner role (kfp >= 2.16, which runs dsl.If locally).
Nothing is imported here, so importing the package needs no kfp.
"""

__all__: list[str] = []
