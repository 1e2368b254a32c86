"""What a configuration costs, measured like a benchmark: one module per job.

- `measure`: the primitives (peak tensor memory of a callable, its FLOPs, a device sync).
- `settings`: how a profile is measured (rounds, steps; no torch import).
- `profile`: a cost profile of several arms, interleaved over paired rounds in one process.
- `speed`: the speed verdicts (arm / baseline time ratios) from paired rounds.
- `store`: profiles in the database (`armin_cost_profiles`, `armin_cost_samples`).
- `hook`: the study driver's hooks: build the C++ loop on every node, profile after the trials.
- `warm`: build or load the C++ loop once, outside any timed region, saying so when it builds.
"""
