"""What a design-space sweep builds: the SPEC file of ``tritile sweep`` and its points.

A SPEC is a TOML or JSON file::

    base = "icebreaker"            # a preset name or a config JSON file
    boards = ["icebreaker"]        # optional; ``--board`` replaces it
    model = "mlp.onnx"             # optional; its cycles per inference are predicted
    engine = "int8"                # optional; the engine the model runs on
    [grid]                         # every combination of these values
    systolic_rows = [2, 4]
    ternary_lanes = [4, 8]
    [[points]]                     # and/or these parameter tables, one point each
    systolic_rows = 1

A malformed SPEC (an unknown key or parameter, a value that is not an integer, a grid
entry that is not a list) is a :class:`SweepError`. A well-formed point whose config
breaks a rule of :class:`~tritile.sw.config.AcceleratorConfig`, or on which a layer of
the model does not fit, is *invalid*: it is listed with the reason and not built.
"""

import dataclasses
import itertools
import json
import tomllib
from pathlib import Path

from .compiler import ENGINES, layer_limit_problems
from .config import PRESETS, AcceleratorConfig, ConfigError, load_config
from .engines import engine_for_numerics
from .tiling import rows_per_call

__all__ = ["SweepError", "SweepSpec", "ModelCost", "load_spec", "load_model", "model_cost",
           "expand_spec"]

_KEYS = ("base", "boards", "grid", "points", "model", "engine")
_PARAMETERS = tuple(field.name for field in dataclasses.fields(AcceleratorConfig))


class SweepError(ValueError):
    """A sweep cannot start: a malformed SPEC, an unknown board, an unreachable cluster."""


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A parsed SPEC file.

    Members
    -------
    path : Path
        The file it was read from.
    base : AcceleratorConfig
        The config every point changes.
    base_name : str
        How the SPEC named it (a preset or a file).
    parameters : tuple of dict
        One dict of parameter -> value per point, grid combinations first, duplicates
        removed.
    boards : tuple of str
        Boards named by the SPEC (not yet checked against the supported ones).
    model : Path or None
        ONNX model whose inferences per second are predicted for each point.
    engine : str or None
        Engine the model runs on (``int8`` or ``ternary``); None: ``int8`` on configs
        with a systolic array, ``ternary`` on the others.
    """

    path: Path
    base: AcceleratorConfig
    base_name: str
    parameters: tuple
    boards: tuple
    model: Path | None
    engine: str | None


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """The model's predicted cost on one config.

    Members
    -------
    engine : str
        ``int8`` or ``ternary``.
    cycles_per_inference : float
        Engine cycles per sample when every engine call carries as many rows as the
        config takes (:func:`tritile.sw.tiling.rows_per_call`), summed over the layers.
    """

    engine: str
    cycles_per_inference: float

    def inferences_per_second(self, clock_hz):
        """Return the samples per second at ``clock_hz``."""
        return clock_hz / self.cycles_per_inference


def _read(path):
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepError(f"cannot read sweep spec {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SweepError(f"sweep spec {path} is not valid {kind}: {exc}") from None


def _check_table(where, table):
    if not isinstance(table, dict):
        raise SweepError(f"{where} must be a table of parameter = value, not "
                         f"{type(table).__name__}")
    unknown = sorted(set(table) - set(_PARAMETERS))
    if unknown:
        raise SweepError(f"{where}: unknown parameter(s) {', '.join(unknown)}; known: "
                         f"{', '.join(_PARAMETERS)}")


def _check_value(where, name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise SweepError(f"{where}: {name} must be an integer, not {value!r}")


def _grid_points(grid):
    _check_table("grid", grid)
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid: {name} must be a non-empty list of integers, not "
                             f"{values!r}")
        for value in values:
            _check_value("grid", name, value)
    names = list(grid)
    if not names:
        return []
    return [dict(zip(names, combination))
            for combination in itertools.product(*(grid[name] for name in names))]


def _listed_points(points):
    if not isinstance(points, list):
        raise SweepError(f"points must be a list of parameter tables, not {points!r}")
    for index, table in enumerate(points):
        _check_table(f"points[{index}]", table)
        for name, value in table.items():
            _check_value(f"points[{index}]", name, value)
    return points


def _relative(spec_path, name):
    path = Path(name)
    return path if path.is_absolute() else spec_path.parent / path


def load_spec(path):
    """Read and check the SPEC file ``path``; return a :class:`SweepSpec`."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise SweepError(f"sweep spec {path} must be a table, not {type(data).__name__}")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise SweepError(f"sweep spec {path}: unknown key(s) {', '.join(unknown)}; known: "
                         f"{', '.join(_KEYS)}")
    base_name = data.get("base")
    if not isinstance(base_name, str):
        raise SweepError(f"sweep spec {path} needs base = a preset name or a config file, "
                         f"not {base_name!r}")
    # A preset name wins over a file of the same name, as with --config.
    try:
        base = load_config(base_name if base_name in PRESETS else str(_relative(path, base_name)))
    except ConfigError as exc:
        raise SweepError(f"sweep spec {path}: base: {exc}") from None
    if "grid" not in data and "points" not in data:
        raise SweepError(f"sweep spec {path} has neither grid nor points: nothing to sweep")
    parameters = []
    for point in _grid_points(data.get("grid", {})) + _listed_points(data.get("points", [])):
        if point not in parameters:
            parameters.append(point)
    boards = data.get("boards", [])
    if not isinstance(boards, list) or not all(isinstance(b, str) for b in boards):
        raise SweepError(f"sweep spec {path}: boards must be a list of board names, not "
                         f"{boards!r}")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise SweepError(f"sweep spec {path}: model must be the path of an ONNX file, not "
                         f"{model!r}")
    engine = data.get("engine")
    if engine is not None and engine not in ENGINES:
        raise SweepError(f"sweep spec {path}: engine must be one of {', '.join(ENGINES)}, "
                         f"not {engine!r}")
    return SweepSpec(path, base, base_name, tuple(parameters), tuple(boards),
                     None if model is None else _relative(path, model), engine)


def load_model(path):
    """Import the ONNX model ``path`` or raise a one-line :class:`SweepError`."""
    from .model import ModelError
    from .onnx_import import OnnxImportError, import_onnx

    try:
        return import_onnx(str(path))
    except (OnnxImportError, ModelError, OSError) as exc:
        first = str(exc).strip().splitlines()
        raise SweepError(f"model {path}: {' '.join(first[:2])}") from None


def model_cost(model, config, engine=None):
    """Return the :class:`ModelCost` of ``model`` on ``config``.

    Raises :class:`SweepError` with every reason the model cannot run there (no engine
    for it, a layer beyond the config's limits).
    """
    engine = engine or ("int8" if "systolic" in config.engines else "ternary")
    spec = engine_for_numerics(engine)
    if spec.name not in config.engines:
        raise SweepError(f"the model runs on the {engine} engine, which config "
                         f"{config.config_id} does not have")
    problems, cycles = [], 0.0
    for index, layer in enumerate(model.layers):
        k, n = layer.in_features, layer.out_features
        found = layer_limit_problems(config, k, n, engine)
        problems += [f"layer {index} ({k}x{n}): {p}" for p in found]
        if not found:
            rows = rows_per_call(spec, config, k, n)
            cycles += spec.plan(config, rows, k, n).cycles / rows
    if problems:
        raise SweepError("the model does not fit: " + "; ".join(problems))
    return ModelCost(engine, cycles)


def expand_spec(spec, model=None):
    """Return ``(valid, invalid)`` for the points of ``spec``.

    ``valid`` is a list of ``(parameters, config, model_cost)`` (``model_cost`` None
    without a model); ``invalid`` a list of ``(parameters, reason)``. Points that give the
    same config are one point.
    """
    valid, invalid, seen = [], [], set()
    for parameters in spec.parameters:
        try:
            config = spec.base.replace(**parameters)
        except ConfigError as exc:
            invalid.append((parameters, str(exc)))
            continue
        if config in seen:
            continue
        seen.add(config)
        cost = None
        if model is not None:
            try:
                cost = model_cost(model, config, spec.engine)
            except SweepError as exc:
                invalid.append((parameters, str(exc)))
                continue
        valid.append((parameters, config, cost))
    return valid, invalid
