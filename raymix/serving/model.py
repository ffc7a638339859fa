"""A trained run held for serving: loaded from a fit's output directory, no Ray.

Per coordinate, in the recipe's order:

- a fixed or random effect is a :class:`~raymix.coordinates.linear_models.LinearModels`
  (sorted ids, intercepts, one CSR coefficient matrix), read with the compiled Avro reader;
- a deep coordinate is its exported SavedModel (``raymix_deep.json`` + ``saved_model.pb``),
  scored from raw text by its ``serving_default`` signature.

A row's total score is ``offset + sum_c score_c(row)``, summed in the recipe's order as
``raymix score`` sums it; both score a coordinate's rows with the same function
(:meth:`LinearModels.scores`, :func:`raymix.deep.export.score_rows`). For a logistic run the
probability is ``1 / (1 + exp(-total))``.

What a request must give (the bag of each coordinate, its entity column, the deep text
column) is :class:`Layout`, taken from the recipe and the run's metadata and feature lists;
:mod:`raymix.serving.requests` checks a request against it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from raymix.coordinates.inputs import bag_label, build_source, feature_names
from raymix.coordinates.linear_models import LinearModels, load_linear_models
from raymix.errors import DataError, RecipeError
from raymix.recipe.spec import DeepEffect, ExternalEffect, FixedEffect, RandomEffect, Recipe

KEYED_DIM = 1 << 16  # Bag.keys holds the decimal indices of bags up to this wide
RUN_FILE = "run.json"  # raymix.outputs.RUN_FILE (the application floor, above this one)


@dataclass(frozen=True)
class Bag:
    """A feature bag as a request gives it: ``{name|index: value}`` or a dense list of
    ``dim`` values. ``features`` maps a feature's name (``name`` for an empty term, else
    ``name,term`` as in the feature list) to its index; None without a feature list."""

    name: str
    dim: int
    dense: bool
    features: dict[str, int] | None = None
    #: a bag of scalar columns: a request gives each as its own field (one feature each)
    columns: tuple[str, ...] | None = None

    @cached_property
    def keys(self) -> dict[str, int]:
        """Feature index per request key, one dict lookup a key: every name of the feature
        list, and (for a bag of at most :data:`KEYED_DIM` features) each index in canonical
        decimal that no name shadows. A key not here ("007", an index of a wider bag) is
        read as the request parser reads it."""
        keys = {str(j): j for j in range(self.dim)} if self.dim <= KEYED_DIM else {}
        keys.update(self.features or {})  # a name wins over an index, as in the parser
        return keys


@dataclass(frozen=True)
class Layout:
    """The fields of a request row: bags by name, entity columns, text columns."""

    bags: dict[str, Bag]
    entities: tuple[str, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class ServedCoordinate:
    name: str
    kind: str  # "fixed", "random" or "deep"
    bag: str | None
    entity: str | None = None
    text: str | None = None
    linear: LinearModels | None = None
    deep_model: str | None = None

    def scores(self, X, entity: np.ndarray | None, texts: list[str] | None) -> np.ndarray:
        """This coordinate's own per-row scores (float64, no offset)."""
        if self.linear is not None:  # one thread: a request is small, a replica has one core
            return self.linear.scores(X, entity, threads=1)
        from raymix.deep.export import score_rows
        from raymix.deep.inputs import pad_sparse

        ids, values = pad_sparse(X)
        return score_rows(str(self.deep_model), list(texts or []), ids, values)


@dataclass(frozen=True)
class Scored:
    """Per row: ``total`` (offset included), each coordinate's own ``scores`` and, for a
    logistic run, ``probability``."""

    total: np.ndarray
    coordinates: dict[str, np.ndarray]
    probability: np.ndarray | None


@dataclass(frozen=True)
class ServedRun:
    name: str
    output: str
    coordinates: tuple[ServedCoordinate, ...]
    layout: Layout
    logistic: bool
    load_seconds: float

    @property
    def nbytes(self) -> int:
        """Bytes of the linear models' arrays."""
        return sum(c.linear.nbytes for c in self.coordinates if c.linear is not None)

    def describe(self) -> dict:
        """What ``GET /`` shows: the run and its coordinates."""
        coordinates = []
        for c in self.coordinates:
            item: dict = {"name": c.name, "kind": c.kind, "bag": c.bag}
            if c.entity:
                item["entity"] = c.entity
            if c.text:
                item["text"] = c.text
            if c.linear is not None:
                item["models"] = c.linear.n_models
            coordinates.append(item)
        bags = {
            b.name: {"dim": b.dim, "layout": "dense" if b.dense else "sparse"}
            for b in self.layout.bags.values()
        }
        return {
            "run": self.name,
            "output": self.output,
            "task": "logistic" if self.logistic else "other",
            "coordinates": coordinates,
            "bags": bags,
            "model_bytes": self.nbytes,
            "load_seconds": round(self.load_seconds, 3),
        }

    def score(self, batch) -> Scored:
        """Score a :class:`raymix.serving.requests.Batch` checked against :attr:`layout`."""
        total = np.zeros(batch.n)
        total += batch.offset
        own = {}
        for c in self.coordinates:
            X = batch.bags[c.bag] if c.bag else _no_features(batch.n)
            entity = batch.entities[c.entity] if c.entity else None
            texts = batch.texts[c.text] if c.text else None
            own[c.name] = c.scores(X, entity, texts)
            total = total + own[c.name]
        probability = 1.0 / (1.0 + np.exp(-total)) if self.logistic else None
        return Scored(total, own, probability)


def _no_features(n: int):
    import scipy.sparse as sp

    return sp.csr_matrix((n, 0), dtype=np.float64)


def feature_keys(names: list[tuple[str, str]]) -> dict[str, int]:
    """A feature list's ``(name, term)`` pairs as request keys: ``name`` for an empty term,
    else ``name,term``; of two equal keys the last index wins (as the model reader does)."""
    return {(name if not term else f"{name},{term}"): j for j, (name, term) in enumerate(names)}


def check_run(output: str | Path) -> Path:
    """``output`` (resolved) if it is a fit's output directory this module can serve: its
    ``run.json`` loads and every coordinate has its models; cheap, before anything starts."""
    output = Path(output).resolve()
    _recipe(output)
    return output


def _recipe(output: Path) -> Recipe:
    from raymix.recipe.load import load_recipe

    if not (output / RUN_FILE).is_file():
        raise RecipeError(f"'{output}' is not a raymix fit output (no {RUN_FILE})")
    recipe: Recipe = load_recipe(output / RUN_FILE)
    for spec in recipe.coordinates:
        if isinstance(spec, ExternalEffect):
            raise RecipeError(
                f"coordinate '{spec.name}' is external: serve it with the model that made it"
            )
        if not (output / spec.name / "models").exists():
            raise DataError("no models here", path=str(output / spec.name / "models"))
    return recipe


def load_run(output: str | Path) -> ServedRun:
    """Load a fit's output directory for serving (its ``run.json``, models, metadata)."""
    start = time.perf_counter()
    output = Path(output).resolve()
    recipe = _recipe(output)
    coordinates: list[ServedCoordinate] = []
    bags: dict[str, Bag] = {}
    for spec in recipe.coordinates:
        assert not isinstance(spec, ExternalEffect)  # refused by _recipe
        entity = spec.entity if isinstance(spec, RandomEffect) else None
        data = recipe.data_for(spec)
        source = build_source(
            data,
            recipe.columns,
            split="train",
            bag=spec.feature_bag,
            entity=entity,
            label_optional=True,
        )
        directory = output / spec.name / "models"
        given = spec.feature_bag
        bag = bag_label(given) if given else None
        names = feature_names(data, given, source.schema.dim)
        if given and bag:
            found = Bag(
                bag,
                source.schema.dim,
                source.schema.dense_bag,
                feature_keys(names) if names is not None else None,
                given if isinstance(given, tuple) else None,
            )
            if bags.setdefault(bag, found) != found:
                raise DataError(
                    f"bag '{bag}' has another layout in coordinate '{spec.name}'s data",
                    path=str(directory),
                )
        if isinstance(spec, DeepEffect):
            from raymix.deep.export import check_deep_model, load_saved_model, read_meta

            model = check_deep_model(directory, source)
            load_saved_model(model)  # before the first request
            text = read_meta(model)["text_column"]
            coordinates.append(
                ServedCoordinate(spec.name, "deep", bag, text=text, deep_model=model)
            )
            continue
        models = load_linear_models(directory, names, source.schema.dim)
        if isinstance(spec, FixedEffect) and models.n_models != 1:
            raise DataError("a fixed effect has exactly one model", path=str(directory))
        kind = "fixed" if isinstance(spec, FixedEffect) else "random"
        if entity:
            models.int_ids  # noqa: B018 (built now, not by the first request)
        coordinates.append(ServedCoordinate(spec.name, kind, bag, entity=entity, linear=models))
    layout = Layout(
        bags=bags,
        entities=tuple(dict.fromkeys(c.entity for c in coordinates if c.entity)),
        texts=tuple(dict.fromkeys(c.text for c in coordinates if c.text)),
    )
    return ServedRun(
        name=recipe.name,
        output=str(output),
        coordinates=tuple(coordinates),
        layout=layout,
        logistic=all(getattr(spec, "task", None) == "logistic" for spec in recipe.coordinates),
        load_seconds=time.perf_counter() - start,
    )
