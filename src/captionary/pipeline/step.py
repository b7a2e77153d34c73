"""Step base classes, one per kind. A step subclasses one and implements one method.

Parameters are class annotations (the class becomes a dataclass); they are type-checked when the
step is built, so a bad pipeline fails before any work. Class attributes declare the rest:

    name          registry name (snake_case); a class that sets it is registered
    version       bump when the step's output changes for the same input
    reads         properties the step reads (part of the input fingerprint)
    writes        properties the step may write (checked)
    reads_image   False for steps that never look at pixels (their cache ignores the image)
    parallel      True for CPU-heavy per-item work, run in the process pool
    cache_exclude parameters that do not change results (batch size, workers, ...)
    runtime_type  the dataclass of the step's per-process working state (`step.runtime`)

Values a step computes once from its parameters (a model fingerprint, a compiled expression) are
`functools.cached_property`s: they travel with the step when it is pickled to a worker. What it
builds while running (a loaded model, thread pools, memos) lives in `step.runtime`, which is never a
parameter, never part of a cache key and never pickled: a copy sent to a worker starts empty.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import threading
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core import engines
from captionary.core.arrays import externalize
from captionary.core.hashing import canonical_json, step_prefix
from captionary.core.item import ORDER_PROPERTY, auto_engine
from captionary.core.outcome import Child, Outcome
from captionary.errors import ItemError, ParamError
from captionary.pipeline.params import check, type_name
from captionary.pipeline.registry import STEPS

if TYPE_CHECKING:
    from PIL.Image import Image

    from captionary.core.blobstore import BlobStore
    from captionary.core.engines import ImageEngine
    from captionary.core.item import Item
    from captionary.pipeline.context import SinkContext, SourceContext
    from captionary.pipeline.pipeline import Pipeline


__all__ = ["Child", "Outcome"]  # re-exported: they live in core/outcome.py


@dataclass
class Runtime:
    """A step's per-process working state. Steps that keep some subclass it (a dataclass with
    defaults) and name it in their `runtime_type`."""


_RUNTIME_LOCK = threading.Lock()  # held only to create a step's runtime (driver and batch threads race)


class Step:
    kind: ClassVar[str] = ""
    wants_draft: ClassVar[bool] = False  # image steps that override ImageMap.draft_scale
    name: ClassVar[str] = ""
    version: ClassVar[int | str] = 1
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    reads_image: ClassVar[bool] = True
    parallel: ClassVar[bool] = False
    cache_exclude: ClassVar[tuple[str, ...]] = ()
    rebuilt_on_unpickle: ClassVar[tuple[str, ...]] = ()  # built by validate() (a backend with its clients)
    runtime_type: ClassVar[type[Runtime]] = Runtime

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        taken = [n for n in inspect.get_annotations(cls) if _is_step_attribute(cls, n)]
        if taken:
            raise TypeError(f"{cls.__qualname__}: parameter name(s) {taken} would hide Step attributes")
        dataclass(cls, eq=False, repr=False)
        if "name" in cls.__dict__ and cls.name:
            STEPS.add(cls)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            where = f"{self.name}.{field.name}"
            setattr(self, field.name, check(value, hints[field.name], where, param=field.name))
        self.validate()

    # --- hooks -------------------------------------------------------------------------------
    def validate(self) -> None:
        """Cross-parameter checks; raise ParamError. Runs when the step is built."""

    def model_id(self) -> str | None:
        """Model id and revision, for steps that run a model (part of the cache key)."""
        return None

    def expanded(self) -> list[Step]:
        """The steps this one stands for in a pipeline: itself. A shorthand (`class_images` with a
        model: a source and its generation step) returns several; expanding those again changes nothing."""
        return [self]

    def expected_properties(self) -> tuple[str, ...]:
        """Properties this step's parameters name and needs to exist (a filter expression's names):
        checked before the run against what earlier steps write (`pipeline/properties.py`)."""
        return ()

    # --- composition and description -----------------------------------------------------------
    def __rshift__(self, other: Step | type[Step] | Pipeline) -> Pipeline:
        from captionary.pipeline.pipeline import Pipeline

        return Pipeline([self]) >> other

    @property
    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def cache_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in self.cache_exclude}

    @functools.cached_property
    def cache_prefix(self) -> bytes:
        """The fixed part of this step's cache keys (computed once)."""
        return step_prefix(self.name, self.version, self.cache_params, self.model_id())

    @functools.cached_property
    def recipe_json(self) -> str:
        """`"name",{params}` as JSON, enough to build this step again (computed once)."""
        return canonical_json(self.name) + "," + canonical_json(self.params)

    @classmethod
    def from_recipe(cls, params: dict[str, Any]) -> Step:
        """The step a stored recipe entry names, built from its parameters."""
        return cls(**params)

    # --- per-process state -------------------------------------------------------------------
    @property
    def runtime(self) -> Any:
        """This step's working state in this process (a `runtime_type`), created on first use."""
        state = vars(self).get("_runtime")
        if state is None:
            with _RUNTIME_LOCK:
                state = vars(self).setdefault("_runtime", self.runtime_type())
        return state

    def reset_runtime(self) -> None:
        """Forget the working state (after `teardown`): the next use starts from a fresh one."""
        vars(self).pop("_runtime", None)

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the runtime (a step sent to another process starts with a fresh one) and the
        attributes `validate()` builds that must not travel (`rebuilt_on_unpickle`)."""
        left = {"_runtime", "_forced", *self.rebuilt_on_unpickle}
        return {k: v for k, v in vars(self).items() if k not in left}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        if self.rebuilt_on_unpickle:
            self.validate()

    def describe(self) -> dict[str, Any]:
        return {"step": self.name, **{k: _plain(v) for k, v in self.params.items()}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def summary(cls) -> str:
        """The docstring's first paragraph on one line (what `captionary steps` prints), never cut."""
        paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(line.strip() for line in paragraph.splitlines())

    @classmethod
    def signature(cls) -> list[str]:
        hints = typing.get_type_hints(cls)
        out = []
        for field in dataclasses.fields(cls):
            text = f"{field.name}: {type_name(hints[field.name])}"
            if field.default is not dataclasses.MISSING:
                text += f" = {field.default!r}"
            elif field.default_factory is not dataclasses.MISSING:
                text += f" = {field.default_factory()!r}"
            out.append(text)
        return out


def _is_step_attribute(cls: type, name: str) -> bool:
    """Names a parameter may not take: methods and properties of the step base classes (those in
    `captionary.pipeline`; class settings like `reads` are annotated as ClassVar and allowed)."""
    for base in cls.__mro__[1:]:
        if not base.__module__.startswith("captionary.pipeline."):
            continue
        if isinstance(vars(base).get(name), (property, functools.cached_property, types.FunctionType)):
            return True
    return False


def _plain(value: Any) -> Any:
    return json.loads(canonical_json(value)) if not isinstance(value, (str, int, float, bool)) else value


class PerItemStep(Step):
    """Map and filter steps: one item in, one outcome out."""

    def compute(self, item: Item, store: BlobStore) -> Outcome:
        raise NotImplementedError


class Map(PerItemStep):
    """Writes properties. Implement `apply(item) -> dict` of updates (or None for no change).

    A numpy array value is stored as a blob and replaced by its reference (`core/arrays.py`).
    """

    kind: ClassVar[str] = "map"

    def apply(self, item: Item) -> dict[str, Any] | None:
        raise NotImplementedError

    def compute(self, item: Item, store: BlobStore) -> Outcome:
        return Outcome(props=externalize(checked_updates(self, self.apply(item)), store, self.model_id()))


class ImageMap(PerItemStep):
    """Changes pixels. Implement `transform(image, item) -> Image` (return `image` itself for no change).

    `transform` must be deterministic: the new image is not stored but recomputed from the original
    when needed (the sink encodes it once, at its quality). `width`/`height` are updated. A transform
    may read only the properties it declares in `reads`.
    """

    kind: ClassVar[str] = "map"
    parallel: ClassVar[bool] = True
    writes: ClassVar[tuple[str, ...]] = ("width", "height")

    def transform(self, image: Image, item: Item) -> Image:
        raise NotImplementedError

    # --- the image engine: a step with an `engine` parameter (auto | pillow | vips) works in it ------
    @functools.cached_property
    def image_engine(self) -> ImageEngine | None:
        """The engine `transform` gets images of and computes with (`core/engines`); Pillow for a step
        without an `engine` parameter; None for `auto` (chosen per image: `for_item`)."""
        name = self.engine_name
        return None if name == "auto" else engines.get(name)

    def in_engine(self, image: Any, work: Callable[[ImageEngine, Any], Any]) -> Any:
        """`work(engine, image)`: the chain and recipes hand a step its own engine's images; an image
        of another kind (a caller's PIL image given to `transform`), or any image under `auto`, is
        worked on by its own engine."""
        engine = self.image_engine
        return work(engine if engine is not None and engine.owns(image) else engines.owner(image), image)

    @property
    def engine_name(self) -> str:
        """`pillow`, `vips`, or `auto` (per image; only where pyvips is installed): the `engine`
        parameter resolved (Pillow for a step without one)."""
        return engines.resolve(self.engine if engines.has_engine_parameter(type(self)) else "pillow")

    @functools.cached_property
    def per_image_engine(self) -> bool:
        """`auto` with pyvips installed: each item's image takes the engine `auto_engine` names."""
        return self.engine_name == "auto"

    def for_item(self, item: Item) -> ImageMap:
        """This step as it runs on `item`: itself, or under `auto` the same step with the engine this
        item's image takes (`core.item.auto_engine`: the engine that made it, else by its size). The
        chain computes with it and recipes record it, so a replay uses the engine that made the image."""
        if not self.per_image_engine:
            return self
        name = auto_engine(item)
        forced = vars(self).get("_forced") or vars(self).setdefault("_forced", {})
        step = forced.get(name)
        if step is None:  # once per engine (a race builds an equal twin: harmless)
            step = forced[name] = type(self)(**{**self.params, "engine": name})
        return step

    @property
    def cache_params(self) -> dict[str, Any]:
        """The engine joins the key as it resolved: nothing for Pillow (a Pillow result keeps the key
        it had before engines existed), `vips`, or for `auto` its rule (`engines.auto_rule`, with its
        thresholds), so a vips or auto result never answers for a Pillow one or the reverse."""
        params = super().cache_params
        if engines.has_engine_parameter(type(self)):
            del params["engine"]
            name = self.engine_name
            if name != "pillow":
                params["engine"] = engines.auto_rule() if name == "auto" else name
        return params

    @functools.cached_property
    def recipe_json(self) -> str:
        """The recipe names the engine as resolved (an item's recipe holds `for_item`'s step, never
        `auto`), so a replay uses the engine that made the image."""
        params = self.params
        if engines.has_engine_parameter(type(self)):
            params["engine"] = self.engine_name
        return canonical_json(self.name) + "," + canonical_json(params)

    @classmethod
    def from_recipe(cls, params: dict[str, Any]) -> Step:
        """A recipe from before image engines names none: Pillow made it."""
        if "engine" not in params and engines.has_engine_parameter(cls):
            params = {**params, "engine": "pillow"}
        return cls(**params)

    def draft_scale(self, width: int, height: int) -> float | None:
        """Override to let a JPEG be decoded at reduced size: the smallest scale (< 1) of the
        upright `width` x `height` this step needs as input. None: decode fully."""
        return None

    @property
    def wants_draft(self) -> bool:
        return type(self).draft_scale is not ImageMap.draft_scale

    def compute(self, item: Item, store: BlobStore) -> Outcome:
        from captionary.core.cache import item_key

        step = self.for_item(item)  # `auto`: this step in the engine this item takes
        before = item.pixels_for(step)
        after = step.transform(before, item)
        if after is before:  # unchanged, but read: a corrupt file fails here, as Pillow's eager decode does
            item.realize_pixels()
            return Outcome()
        after = engines.owner(after).realize(after)  # a lazy engine's errors are this step's
        derived = "~" + item_key(self, item).hex()
        return Outcome(props={"width": after.width, "height": after.height}, image=derived, pixels=after)


class Filter(PerItemStep):
    """Keeps or drops. Implement `drop_reason(item) -> str | None` (None keeps the item)."""

    kind: ClassVar[str] = "filter"
    writes: ClassVar[tuple[str, ...]] = ()

    def drop_reason(self, item: Item) -> str | None:
        raise NotImplementedError

    def compute(self, item: Item, store: BlobStore) -> Outcome:
        return Outcome(dropped=self.drop_reason(item))


class BatchStep(Step):
    """Model inference. Implement `apply_batch(items) -> list[dict]` (one update dict per item).

    Subclasses usually declare a `batch_size: int` parameter. A batch that raises is retried item by
    item, so one bad image fails alone. A numpy array value is stored as a blob and replaced by its
    reference (`core/arrays.py`) before it is cached.
    """

    kind: ClassVar[str] = "batch"
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size",)

    @property
    def size_of_batch(self) -> int:
        return int(getattr(self, "batch_size", 8))

    def setup(self) -> None:
        """Load the model. Called once, in the stage's thread, before the first batch."""

    def teardown(self) -> None:
        """Release the model. Called when the step has seen its last item."""

    def usage(self) -> dict[str, int]:
        """Counters for the run summary (e.g. model tokens), read once before `teardown`."""
        return {}

    def accelerator(self) -> str | None:
        """The device the model occupies once loaded (`cuda`, `cuda:1`, `mps`), or None (CPU, a remote
        API). Asked only when the step is about to load. A step waits to load until earlier steps on
        the same kind of device released their models, so two GPU steps never hold two models."""
        return None

    def gpus_per_model(self) -> int | None:
        """GPUs one copy of the model needs, when it needs more than one (a model split over GPUs):
        the ray executor gives each model actor that many. None: one, where the cluster has GPUs."""
        return None

    def prefetch(self, items: Sequence[Item]) -> None:
        """A batch was queued (called in the driver thread; must not block): start preparing its
        inputs in the background, e.g. decoding images, so the model never waits for them."""

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        raise NotImplementedError

    def compute_batch(self, items: Sequence[Item]) -> list[Outcome]:
        updates = self.apply_batch(items)
        if len(updates) != len(items):
            raise ItemError(f"{self.name} returned {len(updates)} results for {len(items)} items")
        return [Outcome(props=checked_updates(self, u)) for u in updates]


@dataclass
class GlobalRuntime(Runtime):
    note: str = ""  # what the step says about its last `apply_all` (shown on the progress line)


class GlobalStep(Step):
    """Needs every item at once (dedup, take, rank). Implement `apply_all(items) -> list[Outcome]`.

    Items arrive sorted by (`order` property if set, source, id), never in arrival order. While they
    arrive, the progress line shows `waiting(count)`; afterwards `runtime.note`, if the step set one.
    """

    kind: ClassVar[str] = "global"
    runtime_type: ClassVar[type[Runtime]] = GlobalRuntime

    def waiting(self, count: int) -> str:
        """The progress line's note while items arrive (a global step acts once all are in)."""
        return f"waiting for every item: {count} so far"

    @property
    def writes_order(self) -> bool:
        """True for steps that set items' `order` (their output is emitted in that order)."""
        return ORDER_PROPERTY in self.writes

    def prepare(self, ws: Any) -> str:
        """Read what the step needs from the workspace besides its items (e.g. human decisions) and
        return a fingerprint of it, which joins the cache key. Runs before the cache lookup."""
        return ""

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        raise NotImplementedError

    def usage(self) -> dict[str, float]:
        """What `apply_all` reports for the run summary (e.g. a learned step's held-out accuracy);
        cached with its result."""
        return {}


class FanOut(Step):
    """Makes new items (children) from each input. Implement `children(item) -> list[Child]`.

    A child's id is derived from its parent's id, this step's cache prefix and the child's key
    (`core.outcome.child_id`), so a re-run finds it (and everything downstream of it) cached. A child
    gets the property `parent` (the parent's id), the parent's properties (unless `Child.inherit` is
    False) and the child's `props` (declared in `writes`, like `region`). Its image is the parent's
    with `Child.transform` applied (a derived image: parent recipe + one entry, never stored), or a
    stored blob (`Child.image`), or the parent's image as it is.

    The parent goes on too when the step's `keep_parent` parameter (declare one) is true; otherwise it
    is recorded as dropped ("split into N items"). Fan-out steps run in the driver, one item at a time,
    on cache misses: keep them cheap (read properties such as boxes a batch step wrote, not pixels).
    A batch step that fans out returns `Outcome(children=[...])` from `compute_batch` instead.
    """

    kind: ClassVar[str] = "fanout"
    reads_image: ClassVar[bool] = False

    def children(self, item: Item) -> list[Child]:
        raise NotImplementedError

    def _check_children(self, children: list[Child]) -> None:
        keys = set()
        for child in children:
            checked_updates(self, child.props)
            if child.key in keys:
                raise ItemError(f"{self.name} made two children with key {child.key!r}")
            keys.add(child.key)
            if child.children:
                self._check_children(child.children)

    @property
    def keeps_parent(self) -> bool:
        return bool(getattr(self, "keep_parent", False))

    def compute(self, item: Item, store: BlobStore) -> Outcome:
        children = list(self.children(item))
        self._check_children(children)
        if self.keeps_parent:
            return Outcome(children=children)
        reason = f"split into {len(children)} items" if children else "no items to split into"
        return Outcome(dropped=reason, children=children)


@dataclass(slots=True)
class Ingested:
    """One record a source produced: an item (new or known), a drop, or an error."""

    source: str
    item: Item | None = None
    cached: bool = False
    dropped: str | None = None
    error: str | None = None


class Source(Step):
    """Produces items. Implement `scan(ctx)`, yielding `Ingested` records.

    `Load(a) + Load(b)` (or `concat(...)`) merges several sources in order.

    `provides` names the properties its items may have; `open_properties` says whether they may also
    have others the pipeline cannot know before the run (sidecar keys, manifest columns): then a
    later step naming an unknown property is a warning, not an error.
    """

    kind: ClassVar[str] = "source"
    provides: ClassVar[tuple[str, ...]] = ("width", "height")
    open_properties: ClassVar[bool] = True

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        raise NotImplementedError

    def __add__(self, other: Step | Pipeline) -> Pipeline:
        from captionary.pipeline.pipeline import concat

        return concat(self, other)


class Sink(Step):
    """Writes items out; items pass through unchanged. Implement `open(ctx)`, `close(complete)` and
    `write(items)`, which returns per item: True (written), False (already up to date), a string
    (the reason it failed), or a Future of `(item, True | False | reason)` for a write in progress; items
    written as one task may share one Future, whose result is then the list of their such pairs."""

    kind: ClassVar[str] = "sink"

    def open(self, ctx: SinkContext) -> None:
        pass

    def write(self, items: Sequence[Item]) -> list[Any]:
        raise NotImplementedError

    def close(self, complete: bool) -> None:
        pass

    def usage(self) -> dict[str, int]:
        """Counters for the run summary (e.g. items without a caption), read after `close`."""
        return {}

    def renderer(self) -> Any:
        """An optional picklable object whose `render(item) -> (digest, bytes) | None` encodes an item's
        file where its pixels already are (a pool worker), so the sink need not decode them again."""
        return None


def checked_updates(step: Step, updates: dict[str, Any] | None) -> dict[str, Any] | None:
    """Refuse properties a step did not declare in `writes` (they would escape cache tracking)."""
    if not updates:
        return None
    if not isinstance(updates, dict):
        raise ItemError(f"{step.name} returned {type(updates).__name__}, expected a dict of properties")
    undeclared = [k for k in updates if k not in step.writes]
    if undeclared:
        raise ItemError(
            f"{step.name} wrote {', '.join(map(repr, undeclared))} not declared in its writes={step.writes!r}"
        )
    return updates


def require(condition: bool, step: Step, message: str, param: str | None = None) -> None:
    """Raise a ParamError naming the step (and parameter) unless `condition` holds (for `validate`)."""
    if not condition:
        where = f"{step.name}.{param}" if param else step.name
        raise ParamError(f"{where}: {message}", param=param)
