"""`autospik energy`: the per-layer energy report of one architecture under an energy model.

Three modes, each labelled in the output so that no number passes for what it is not:
- ``--study NAME``: measured exactly as the study's trials are (its supernet, data, calibration
  and evaluation images, energy model), so a trial's architecture gets the trial's energy;
- a checkpoint and a data set: firing rates measured on test batches (and the accuracy on them);
- otherwise: the analytic dense counts with every input rate 1, an upper bound for spike inputs,
  shaped by the checkpoint or the data set when one is given (CIFAR-10 shapes when neither is).

Every report names its energy model and gives the dense ANN equivalent under the same model. An
event data set (``--dataset cifar10dvs``) counts the first conv as SOPs of its frames.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from autospikformer.cli.common import (
    RUNS_DIR,
    STORAGE,
    THREADS,
    console,
    fail,
    guard,
    print_table,
    set_threads,
)
from autospikformer.data.base import image_hw

EXAMPLE = "'d2-e48-t4:r3,4:h4,4:th1,1.2:tau2,3'"
UPPER_BOUND = "upper bound: every input rate 1 (no checkpoint and data set to measure rates)"
CIFAR10_SHAPES = {"num_classes": 10, "in_channels": 3, "img_size": 32}
#: The data set a shipped space preset is searched on, when ``--dataset`` is left out.
SPACE_DATASETS = {"digits": "digits", "dvs": "cifar10dvs"}
ENERGY_MODEL_HELP = (
    "Energy model: sop-45nm (arithmetic, the paper's) or memory-45nm (docs/energy.md)."
)
CONSTANTS_HELP = (
    "A TOML file whose [energy] table sets the model and constants (a study file works)."
)


def energy_model_from(name: str | None, constants: Path | None, default: Any = None) -> Any:
    """The model of ``--energy-model`` and ``--constants``: the file's ``[energy]`` table (else
    ``default``, else the defaults), renamed to ``name`` when given; bad input fails in one line."""
    import tomllib

    from autospikformer.energy.models import MODEL_NAMES, EnergyError, EnergyModel

    if name is not None and name not in MODEL_NAMES:
        fail(f"--energy-model: {name!r} is not an energy model (allowed: {', '.join(MODEL_NAMES)})")
    model = default or EnergyModel()
    if constants is not None:
        if not constants.is_file():
            fail(f"--constants: file {str(constants)!r} does not exist")
        try:
            data = tomllib.loads(constants.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            fail(f"--constants: {constants} is not a text file (give a TOML file)")
        except tomllib.TOMLDecodeError as exc:
            fail(f"--constants: {constants} is not valid TOML ({exc})")
        if "energy" not in data:
            fail(f"--constants: {constants} has no [energy] table")
        try:
            model = EnergyModel.from_table(data["energy"])
        except EnergyError as exc:
            fail(f"{constants.name}: {exc}")
    return model if name is None else model.with_name(name)


def _read_arch(text: str) -> Any:
    """The compact string, a JSON object, or ``@file.json``; bad input fails in one line that
    says where the architecture came from and what is expected."""
    from autospikformer.search.architecture import Architecture

    source = f"architecture {text if len(text) <= 60 else text[:57] + '...'!r}"
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"architecture file {str(path)!r}"
        if path.is_dir():
            fail(f"{source} is a folder; give a JSON file (@arch.json)")
        if not path.is_file():
            fail(f"{source} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            fail(f"{source} is not a text file; give a JSON file or the compact form {EXAMPLE}")
    try:
        return Architecture.parse(text)
    except json.JSONDecodeError as exc:
        fail(
            f"{source} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
            f"give a JSON object or the compact form {EXAMPLE}"
        )
    except (ValueError, TypeError) as exc:
        message = str(exc).splitlines()[0]
        fail(message if message.startswith("cannot read architecture") else f"{source}: {message}")


def _load_model(path: Path, arch: Any, device: str) -> tuple[Any, dict[str, int]]:
    """The checkpoint's model on ``device`` and its input shapes; refuses another architecture."""
    from autospikformer.checkpoint import load_model

    model, meta = guard(load_model, path)
    if meta["kind"] == "supernet":
        off = model.space.violations(arch)
        if off:
            fail(f"architecture {arch} is not in space {model.space.name!r} of {path}: {off[0]}")
    elif model.arch != arch:
        fail(f"checkpoint {path} holds {model.arch}, not {arch}")
    return model.to(device), {k: meta[k] for k in CIFAR10_SHAPES}


def _measure(
    model: Any, arch: Any, dataset: str, root: Path | None, batches: int, batch_size: int,
    device: str, energy_model: Any,
) -> Any:  # fmt: skip
    """Rates and accuracy from the same test batches (one pass, the meter's hooks)."""
    from autospikformer.data.base import dataset_info
    from autospikformer.data.loading import build_dataset, make_loader
    from autospikformer.training.evaluate import measure_energy

    events = dataset_info(dataset).event_based
    extra = {"time_steps": arch.time_steps} if events else {}
    data = build_dataset(dataset, root, train=False, **extra)
    loader = make_loader(data, batch_size=batch_size, train=False)
    report = measure_energy(
        model, arch, loader, limit=batches, device=device, event_data=events,
        energy_model=energy_model,
    )  # fmt: skip
    if report is None:
        fail(f"the {dataset} test split is empty")
    report.extras["dataset"] = dataset
    return report


def energy(
    arch: str = typer.Argument(
        ...,
        help="Architecture: compact string (d2-e48-t4:r3,4:h4,4:th1,1.2:tau2,3), JSON, or @file.json.",
    ),
    space: str | None = typer.Option(
        None, "--space", help="Refuse the architecture unless it is in this search space."
    ),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Data set whose input shape and classes the architecture is priced for (digits, "
        "cifar10, cifar100, cifar10dvs, dvs128, nmnist, ncaltech101; a folder of your own "
        "through --study); default: the --space preset's (digits for digits, cifar10dvs for "
        "dvs), else cifar10: 3x32x32 images, 10 classes.",
    ),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder of the data set (digits needs none)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Standalone Spikformer or supernet checkpoint."
    ),
    batches: int | None = typer.Option(
        None, "--batches", min=1, help="Test batches to measure rates on (default 10)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Images per batch (default 64)."
    ),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
    energy_model: str | None = typer.Option(None, "--energy-model", help=ENERGY_MODEL_HELP),
    constants: Path | None = typer.Option(None, "--constants", help=CONSTANTS_HELP),
    study: str | None = typer.Option(
        None,
        "--study",
        help="Measure as this study's trials are: its supernet, data, calibration and "
        "evaluation images and energy model (a trial's architecture gets the trial's numbers).",
    ),
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
    threads: int | None = THREADS,
) -> None:
    """Print the per-layer energy table of an architecture (docs/energy.md) and its dense ANN
    equivalent under the same energy model.

    With --study, rates are measured exactly as that study's trials measured them.

    With a checkpoint and a data set, input rates are measured on test batches (with the accuracy).

    Otherwise every input rate is 1: an upper bound.
    """
    set_threads(threads)
    from autospikformer.data.base import DatasetInfo, dataset_info
    from autospikformer.device import resolve_device
    from autospikformer.energy.report import analytic_report
    from autospikformer.search.space import SearchSpace

    architecture = _read_arch(arch)
    if study is not None:
        given = {
            "--dataset": dataset, "--space": space, "--batches": batches,
            "--batch-size": batch_size, "--energy-model": energy_model, "--constants": constants,
        }  # fmt: skip
        clash = [name for name, value in given.items() if value is not None]
        if clash:
            fail(
                f"{clash[0]} cannot be combined with --study (the study's settings apply; "
                "'autospik study export STUDY --energy-model M' re-prices a study)"
            )
        report, mode, shapes = _as_study(
            architecture, study, storage, runs_dir, checkpoint, data_root, device
        )
        _emit(architecture, report, mode, shapes, as_json)
        return
    batches, batch_size = batches or 10, batch_size or 64
    model_used = energy_model_from(energy_model, constants)
    if space is not None:
        guard(lambda: SearchSpace.load(space).check(architecture))
    dataset = dataset or SPACE_DATASETS.get(space or "")
    shapes = dict(CIFAR10_SHAPES)
    events = False
    if dataset is not None:
        info = guard(dataset_info, dataset)
        shapes = {k: getattr(info, k) for k in shapes}
        events = info.event_based
    model = None
    if checkpoint is not None:
        torch_device = str(guard(resolve_device, device))
        model, held = _load_model(checkpoint, architecture, torch_device)
        if dataset is not None and held != shapes:
            fail(f"checkpoint {checkpoint} is shaped {held}, the {dataset} data set {shapes}")
        shapes = held
    if model is not None and dataset is not None:
        report = guard(
            _measure, model, architecture, dataset, data_root, batches, batch_size, torch_device,
            model_used,
        )  # fmt: skip
        mode = f"measured on {report.images} {dataset} test images"
    else:
        data = DatasetInfo(dataset or "cifar10", event_based=events, **shapes)
        try:
            report = analytic_report(architecture, rate=1.0, data=data, model=model_used)
        except ValueError as exc:
            fail(str(exc))
        if model is not None:
            counter = model.num_parameters
            report.num_parameters = counter(architecture) if hasattr(model, "space") else counter()
        mode = UPPER_BOUND
    _emit(architecture, report, mode, shapes, as_json)


def _emit(architecture: Any, report: Any, mode: str, shapes: dict[str, int], as_json: bool) -> None:
    if as_json:
        out = {"architecture": str(architecture), "mode": mode, **shapes, **report.to_dict()}
        print(json.dumps(out))
        return
    _print(architecture, report, mode, shapes)


def _as_study(
    architecture: Any, name: str, storage: str, runs_dir: Path, checkpoint: Path | None,
    data_root: Path | None, device: str,
) -> tuple[Any, str, dict[str, int]]:  # fmt: skip
    """The report of ``architecture`` evaluated as study ``name``'s trials are."""
    from autospikformer.study.evaluator import evaluate_as_study
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.supernet_stage import searched_supernet

    optuna_study, config, _ = resolve_study(name, storage, create=False)
    path = searched_supernet(optuna_study, config, runs_dir=runs_dir, checkpoint=checkpoint)
    result = evaluate_as_study(
        config, path, architecture, data_root=None if data_root is None else str(data_root),
        device=device,
    )  # fmt: skip
    report = result.report
    report.extras["accuracy"] = result.accuracy
    info = config.data_info  # a folder study: the folder it recorded
    shapes = {k: getattr(info, k) for k in CIFAR10_SHAPES}
    split = "validation" if config.search.eval_split == "val" else "test"
    mode = (
        f"measured as study {config.name}'s trials are: {result.samples} {config.dataset} "
        f"{split} images after BN recalibration on {result.calib_images} training images"
    )
    return report, mode, shapes


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}g}"


def _si(value: float) -> str:
    """Operation counts for a narrow terminal: 9.44M, 1.33G."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _in(unit: Any, mj: float) -> str:
    """An energy in ``unit`` for a narrow column: 1,520 / 34.5 / 0.0138."""
    value = unit.scale(mj)
    return f"{value:,.0f}" if abs(value) >= 100 else _fmt(value)


def _print(arch: Any, report: Any, mode: str, shapes: dict[str, int]) -> None:
    from rich import box
    from rich.table import Table

    from autospikformer.energy.counts import IMAGE_ONCE
    from autospikformer.units import energy_unit, percent

    model = report.model
    unit = energy_unit([report.energy_mj])  # one unit for the table and the totals
    table = Table(
        title=f"energy of {arch} ({model.name}; {unit.name} per image)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("layer", no_wrap=True)
    columns = ["MACs", "rate", "ops"]
    columns += ["compute", "memory", "total"] if model.counts_memory else [unit.name]
    for name in [*columns, "ANN"]:
        table.add_column(name, justify="right", no_wrap=True)
    for row in report.table.itertuples(index=False):
        cells = [row.layer, _si(row.dense_macs), _fmt(row.input_rate), _si(row.ops)]
        if model.counts_memory:
            cells += [_in(unit, row.compute_mj), _in(unit, row.memory_mj)]
        table.add_row(*cells, _in(unit, row.energy_mj), _in(unit, row.ann_mj))
    print_table(table)
    c = model.constants
    if report.first_conv_rule == IMAGE_ONCE:
        first = f"sps.convs.0 counted once as MACs at {c.e_mac_pj:g} pJ (a static image)"
    else:
        first = f"sps.convs.0 counted as SOPs of the event frames at {c.e_ac_pj:g} pJ"
    split = (
        f"compute {unit.format(report.compute_mj)}, memory {unit.format(report.memory_mj)}"
        if model.counts_memory
        else "arithmetic only"
    )
    lines = [
        f"mode: {mode}",
        f"energy model: {model.describe()}",
        f"input: {'x'.join(map(str, (shapes['in_channels'], *image_hw(shapes['img_size']))))}, "
        f"{shapes['num_classes']} classes, T = {report.time_steps}; MACs per image and time "
        "step (dense); ops per image (SOPs; MACs for a first conv counted once)",
        f"first conv: {first}",
        f"energy: {unit.format(report.energy_mj)} {unit.name} / image ({split})",
        f"dense ANN equivalent: {unit.format(report.ann_energy_mj)} {unit.name} / image (every "
        "MAC at "
        f"{c.e_mac_pj:g} pJ, T = 1, the same memory model); SNN / ANN = "
        f"{_fmt(report.ann_ratio, 3)}",
        f"total SOPs: {report.total_sops:,.0f} / image",
        f"mean firing rate: {_fmt(report.mean_firing_rate, 4)}",
        f"parameters: {report.num_parameters:,}",
    ]
    if "accuracy" in report.extras:
        lines.append(f"accuracy: {percent(report.extras['accuracy'])} % on the same batches")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
