"""Low-level helpers every layer may use: slice-stack geometry, atomic writes and checkpoint file
sets, safe names and paths, the project's errors, name registries, the command-line edge, a
static HTML page, speed paths and torchrun helpers. The bottom layer: nothing here imports the
project's other packages or entry points."""
