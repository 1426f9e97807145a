"""The pure core: the stage graph, the plan, the lock, digests, sweeps, errors and paths.

Decides without side effects (the lock file's own atomic read and write aside). May
import the standard library, networkx, yaml and `pipeline.spec`; never Hydra, W&B, torch,
the stages, nor any other folder of `pipeline`.
"""
