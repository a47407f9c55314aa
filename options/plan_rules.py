"""The rules of a run's plan: facts of the training data and the machine -> option values.

Each rule is a pure function of numbers returning a :class:`Decision` (the value and a reason
naming the facts), tested by tables in ``tests/options/test_plan.py``:

- ``--resize_to``: 0 (native) when every training slice fits the generator (``unet_64``: sides
  that are multiples of 64); else the multiple nearest the largest side.
- ``--context_slices``: neighbours on each side covering :data:`CONTEXT_COVER_MM` mm of the
  slice stack (the recipe's 2 neighbours of 3 mm slices), 1 to :data:`MAX_CONTEXT_SLICES`.
- ``--input_nc``: 2K + 1 for ``--context_slices`` K (+2 phase planes with ``--phases``), the
  only value the dataset serves; or, when ``--input_nc`` is given, ``--context_slices`` from it.
  Both recipes compute it.
- ``--batch_size``: the recipe's 8, fewer when 8 slices' activations would not fit in
  :data:`ACTIVATION_MEMORY_SHARE` of the device's memory.
- ``--n_epochs``/``--n_epochs_decay``: as many slices seen as the recipe's measured run
  (:data:`RECIPE_SLICES_SEEN`), 10 to 200 epochs, half decaying.
- ``--volume_cache``: 0 (every volume decoded at start-up) unless the decoded volumes would
  exceed :data:`VOLUME_MEMORY_SHARE` of the RAM.
- ``--amp``: ``auto`` stays; the reason says what it means on this machine.

What the rules do not read: the breathing itself. The AVG-to-phase-0 lung-base shift needs every
pair decoded and segmented (seconds per clinical volume) and nothing yet measures how the best
``--context_slices`` follows it; ``test.py`` reports the shift per patient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from data.nifti_aligned_dataset import input_channels
from data.survey import TrainingDataFacts
from models.networks import is_volumetric, slice_size_rule
from options.recipes import SLICE_RECIPE
from util.machine import MachineFacts
from util.phases import PHASE_CHANNELS

#: Millimetres of the slice stack the 2.5-D input covers on each side of a slice: the recipe's
#: 2 neighbours of the phantom's 3 mm slices, where the ablation measured 2 better than 1
#: (benchmarks/README.md). Breathing moves the diaphragm across slices by more than this; the
#: neighbours show which way the anatomy runs, the generator infers the shift.
CONTEXT_COVER_MM = 6.0
#: Most neighbours on each side the plan gives thin slices (first-layer channels, cheap).
MAX_CONTEXT_SLICES = 4
#: Bytes of activations and gradients per training slice, per pixel of the network's slice and
#: per generator filter (``--ngf``), G and D, float32: 35 measured for the recipe at 256 x 256
#: (peak RSS of batch 8 less batch 1, over 7 slices, CPU) and ~31 at 512 x 512
#: (benchmarks/README.md, bench_clinical); rounded up.
BYTES_PER_PIXEL_FILTER = 40
#: Share of the device's memory the planned batch may take (the rest: weights, optimiser
#: state, the data held, the framework).
ACTIVATION_MEMORY_SHARE = 0.4
#: Share of the RAM the decoded training volumes may take before the plan decodes them on use.
VOLUME_MEMORY_SHARE = 0.4
#: Slices the recommended recipe was measured seeing: 60 epochs of 24 patients x 32 slices
#: (benchmarks/quality.py, README's table).
RECIPE_SLICES_SEEN = 60 * 24 * 32
#: Fewest and most epochs the plan gives (a huge dataset still gets 10 passes; a tiny one no
#: more than pix2pix's 200).
MIN_EPOCHS, MAX_EPOCHS = 10, 200
#: Options the rules plan from the data (besides ``--amp``'s reason).
PLANNED_NAMES = ("resize_to", "context_slices", "input_nc", "batch_size", "n_epochs",
                 "n_epochs_decay", "volume_cache")
#: What each planned option's help says (``--recipe recommended``).
PLANNED_HELP: dict[str, str] = {
    "resize_to": "planned: 0 when the training slices fit --netG, else the nearest size that does",
    "context_slices": f"planned: neighbours covering ~{CONTEXT_COVER_MM:g} mm at the training "
                      f"slices' thickness, 1-{MAX_CONTEXT_SLICES}",
    "batch_size": "planned: the recipe's 8, fewer where 8 slices would not fit the device's "
                  "memory",
    "n_epochs": "planned with --n_epochs_decay from the number of training slices: "
                f"{RECIPE_SLICES_SEEN} slices seen, {MIN_EPOCHS}-{MAX_EPOCHS} epochs, half "
                f"decaying",
    "n_epochs_decay": "planned: as many as --n_epochs",
    "volume_cache": f"planned: 0 unless the decoded volumes exceed {VOLUME_MEMORY_SHARE:.0%} "
                    f"of the RAM",
}


@dataclass(frozen=True)
class Decision:
    """A planned value and why (a sentence that names the fact it follows from)."""

    value: Any
    reason: str


def sizes_text(sizes: Iterable[tuple[int, int]]) -> str:
    """``64 x 64`` or ``64 x 64, 128 x 96``: slice sizes (H x W pixels) for reasons."""
    return ", ".join(f"{h} x {w}" for h, w in sizes)


def plan_resize_to(slice_sizes: tuple[tuple[int, int], ...], net_g: str) -> Decision:
    """``--resize_to`` for training slices of ``slice_sizes`` (H, W pixels) and generator
    ``net_g``: 0 when every size fits it, else the multiple of its size rule nearest the
    largest side (at least its least side)."""
    rule = slice_size_rule(net_g)
    if all(rule.takes(h, w) for h, w in slice_sizes):
        return Decision(0, f"slices {sizes_text(slice_sizes)}: {net_g} fits")
    side = max(max(h, w) for h, w in slice_sizes)
    target = max(rule.least, rule.multiple * max(1, math.floor(side / rule.multiple + 0.5)))
    return Decision(target, f"slices {sizes_text(slice_sizes)} do not fit {net_g} (sides that "
                            f"are multiples of {rule.multiple}): resized to {target} x {target}")


def plan_context_slices(slice_thickness_mm: float) -> Decision:
    """``--context_slices`` for slices ``slice_thickness_mm`` apart: neighbours covering about
    :data:`CONTEXT_COVER_MM` mm on each side, 1 to :data:`MAX_CONTEXT_SLICES`."""
    if not slice_thickness_mm > 0:
        return Decision(SLICE_RECIPE["context_slices"], "slice thickness unknown: the recipe's")
    k = min(MAX_CONTEXT_SLICES, max(1, round(CONTEXT_COVER_MM / slice_thickness_mm)))
    return Decision(k, f"slices {slice_thickness_mm:g} mm apart: {k} neighbour(s) each side "
                       f"cover {k * slice_thickness_mm:g} mm (~{CONTEXT_COVER_MM:g} mm wanted)")


def context_from_input_nc(input_nc: int, phase_input: bool) -> Decision | None:
    """``--context_slices`` K for a given ``--input_nc`` 2K + 1 (+ the phase planes with
    ``phase_input``); None when no K gives that many channels (the dataset then says what to
    pass)."""
    image = input_nc - input_channels(0, phase_input) + 1
    if image < 1 or image % 2 == 0:
        return None
    k = (image - 1) // 2
    return Decision(k, f"--input_nc {input_nc}: {image} slice(s) in, {k} neighbour(s) each side")


def plan_input_nc(context_slices: int, phase_input: bool, volumetric: bool) -> Decision:
    """``--input_nc``: the channels the dataset serves (:func:`input_channels`): 2K + 1 slices
    for ``--context_slices`` K, one volume for the volumetric dataset, plus the phase planes
    with ``phase_input``."""
    what = "1 volume" if volumetric else f"2 x {context_slices} + 1 slices"
    planes = f" + {PHASE_CHANNELS} phase planes" if phase_input else ""
    return Decision(input_channels(0 if volumetric else context_slices, phase_input),
                    f"{what}{planes}")


def plan_batch_size(side_px: int, ngf: int, memory_bytes: int, most: int,
                    device: str = "the device") -> Decision:
    """``--batch_size``: ``most`` slices, fewer when their activations (about
    :data:`BYTES_PER_PIXEL_FILTER` bytes per pixel of a ``side_px`` slice and generator filter)
    would exceed :data:`ACTIVATION_MEMORY_SHARE` of ``memory_bytes``; at least 1."""
    per_slice = BYTES_PER_PIXEL_FILTER * side_px * side_px * ngf
    fits = int(ACTIVATION_MEMORY_SHARE * memory_bytes // per_slice)
    batch = max(1, min(most, fits))
    budget = f"{ACTIVATION_MEMORY_SHARE:.0%} of {size_text(memory_bytes)} on {device}"
    each = f"~{size_text(per_slice)} each at ngf {ngf}"
    if batch == most:
        return Decision(batch, f"{most} slices of {side_px} x {side_px} ({each}) fit in {budget}")
    return Decision(batch, f"{most} slices of {side_px} x {side_px} ({each}) would not fit in "
                           f"{budget}: {batch}")


def plan_epochs(samples: int) -> tuple[Decision, Decision]:
    """(``--n_epochs``, ``--n_epochs_decay``) for ``samples`` training samples per epoch: about
    :data:`RECIPE_SLICES_SEEN` samples seen, :data:`MIN_EPOCHS` to :data:`MAX_EPOCHS` epochs,
    half at the initial learning rate (the odd one there) and half decaying."""
    total = min(MAX_EPOCHS, max(MIN_EPOCHS, round(RECIPE_SLICES_SEEN / max(samples, 1))))
    decay = total // 2
    why = (f"{samples} training slices: {total} epochs ({total * samples} slices seen; the "
           f"recipe was measured seeing {RECIPE_SLICES_SEEN}, {MIN_EPOCHS}-{MAX_EPOCHS} epochs)")
    return (Decision(total - decay, f"{why}, half at the initial lr"),
            Decision(decay, f"{why}, half decaying"))


def plan_volume_cache(held_bytes: int, patients: int, ram_bytes: int) -> Decision:
    """``--volume_cache``: 0 (decode every volume at start-up) when ``held_bytes`` fit in
    :data:`VOLUME_MEMORY_SHARE` of ``ram_bytes``; else the patients' volumes that fit (at least
    1) kept, the others decoded on use."""
    budget = VOLUME_MEMORY_SHARE * ram_bytes
    text = (f"{size_text(held_bytes)} decoded, {VOLUME_MEMORY_SHARE:.0%} of "
            f"{size_text(ram_bytes)} of RAM")
    if held_bytes <= budget:
        return Decision(0, f"{patients} patients' volumes, {text}: all held")
    keep = max(1, int(budget // max(held_bytes / max(patients, 1), 1)))
    return Decision(keep, f"{patients} patients' volumes, {text}: {keep} per side kept, the "
                          f"others decoded on use")


def size_text(n_bytes: float) -> str:
    """``512 MiB`` or ``22.2 GiB``: a memory size for reasons."""
    return f"{n_bytes / 2**20:.0f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.1f} GiB"


def amp_reason(machine: MachineFacts) -> str:
    """What ``--amp auto`` means on ``machine``."""
    if machine.on_gpu:
        return f"float32 on {machine.gpu_name or machine.device} (--amp bf16 asks for bf16)"
    if machine.bf16_matrix_units:
        return "bf16: this CPU has bfloat16 matrix units (amx_bf16)"
    return "float32: this CPU has no bfloat16 matrix units"


@dataclass(frozen=True)
class PlanInputs:
    """What the rules read: the options as parsed (``values``, the recipe's defaults in place),
    the options the rules leave alone (``fixed``: given on the command line or taken from a
    resumed run), the training data and the machine surveyed, whether the recipe's rules apply
    (``--recipe recommended`` on NIfTI slices) and whether the input carries phase
    planes (``--phases``)."""

    values: Mapping[str, Any]
    fixed: frozenset[str]
    data: TrainingDataFacts | None
    machine: MachineFacts | None
    data_rules: bool
    phase_input: bool = False


#: Records a decision: (option, decision or None for none).
Decide = Callable[[str, Decision | None], None]


def plan_settings(inputs: PlanInputs) -> dict[str, Decision]:
    """{option: decision} of every option the rules plan (never one in ``inputs.fixed``), each
    rule seeing the values planned before it."""
    values = dict(inputs.values)
    out: dict[str, Decision] = {}

    def decide(name: str, decision: Decision | None) -> None:
        if decision is not None and name not in inputs.fixed and name in values:
            out[name] = decision
            values[name] = decision.value

    data, machine, rules = inputs.data, inputs.machine, inputs.data_rules
    native = not any(float(v) for v in values.get("working_spacing_mm", (0, 0, 0)))
    # a 3-D --netG on slices is refused by the size check, naming what to pair it with
    sized = rules and data is not None and not is_volumetric(values["netG"])
    if sized and data is not None and native:
        decide("resize_to", plan_resize_to(data.slice_sizes, values["netG"]))
    if rules and data is not None and "input_nc" not in inputs.fixed:
        decide("context_slices", plan_context_slices(data.slice_thickness_mm))
    for name, decision in channel_decisions(values, inputs.fixed, inputs.phase_input).items():
        decide(name, decision)
    if sized and data is not None and machine is not None:
        rule = slice_size_rule(values["netG"])
        side = values["resize_to"] or max(max(rule.fit(h, w)) for h, w in data.slice_sizes)
        decide("batch_size", plan_batch_size(side, values["ngf"], machine.device_memory_bytes,
                                             values["batch_size"], machine.device))
    if rules and data is not None and machine is not None and native:
        decide("volume_cache", plan_volume_cache(data.held_bytes(), data.patients,
                                                 machine.ram_bytes))
    if rules:
        decide_epochs(decide, data, values, inputs.fixed)
    if rules and machine is not None and values.get("amp") == "auto":
        decide("amp", Decision("auto", amp_reason(machine)))
    return out


def channel_decisions(values: Mapping[str, Any], fixed: frozenset[str],
                      phase_input: bool) -> dict[str, Decision]:
    """``--input_nc`` from ``--context_slices`` (NIfTI datasets), or ``--context_slices`` from
    a given ``--input_nc`` (slices); empty for other datasets or when both are given."""
    mode = values.get("dataset_mode")
    if mode not in ("nifti_aligned", "nifti_volume"):
        return {}
    volumetric = mode == "nifti_volume" or is_volumetric(values.get("netG", ""))
    if "input_nc" in fixed:
        if "context_slices" in fixed or volumetric:
            return {}
        derived = context_from_input_nc(values["input_nc"], phase_input)
        return {} if derived is None else {"context_slices": derived}
    if values["context_slices"] < 0:  # the dataset refuses it, naming the option
        return {}
    return {"input_nc": plan_input_nc(values["context_slices"], phase_input, volumetric)}


def decide_epochs(decide: Decide, data: TrainingDataFacts | None, values: Mapping[str, Any],
                  fixed: frozenset[str]) -> None:
    """Plan the epochs from the samples per epoch (``--max_dataset_size`` caps them); with one
    of the pair fixed, the other takes its value (half and half); with no data, the recipe's
    stay."""
    given = [n for n in ("n_epochs", "n_epochs_decay") if n in fixed]
    if len(given) == 1:
        other = "n_epochs_decay" if given[0] == "n_epochs" else "n_epochs"
        decide(other, Decision(values[given[0]], f"as many as --{given[0]} (half and half)"))
        return
    if given or data is None:
        return
    cap = values.get("max_dataset_size", math.inf)
    constant, decaying = plan_epochs(int(min(data.samples, cap)))
    decide("n_epochs", constant)
    decide("n_epochs_decay", decaying)
