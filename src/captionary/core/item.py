"""Item: one image (a blob) and its JSON-serialisable properties, as steps see it."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from captionary.core import engines
from captionary.errors import ItemError

if TYPE_CHECKING:
    from PIL.Image import Image

    from captionary.core.blobstore import BlobStore
    from captionary.core.engines import ImageEngine


class ImageTransform(Protocol):
    """What a recipe needs of an image step (`pipeline.step.ImageMap` is one)."""

    name: str
    reads: tuple[str, ...]

    @property
    def cache_prefix(self) -> bytes: ...

    @property
    def recipe_json(self) -> str: ...

    @property
    def wants_draft(self) -> bool: ...

    def draft_scale(self, width: int, height: int) -> float | None: ...

    def transform(self, image: Image, item: Item) -> Image: ...


def engine_of(step: ImageTransform | None) -> ImageEngine:
    """The image engine a step works in (`ImageMap.image_engine`); Pillow for any other transform."""
    engine = getattr(step, "image_engine", None)
    return engine if engine is not None else engines.get("pillow")


def auto_engine(item: Item) -> str:
    """The engine `engine: auto` takes for the item's current image (where pyvips is installed): the
    engine of the step that made it (its recipe's last), so a chain stays in one engine and pixels are
    encoded by the engine that made them; else, for an image as stored, `engines.choose` by its size
    (the `width`/`height` properties sources set from the file's header; the header itself when they
    are missing) and format. A function of the item's image alone: the same input, the same engine."""
    if item.recipe:
        return engine_of(item.recipe[-1][0]).name
    width, height = known_size(item) or _stored_size(item)
    return engines.choose(width, height, item.format)


def known_size(item: Item) -> tuple[int, int] | None:
    """The item's `width` and `height` properties (sources set them from the file's header; image
    steps update them), or None when either is missing or not an integer."""
    width, height = item.props.get("width"), item.props.get("height")
    return (width, height) if type(width) is int and type(height) is int else None


def as_run(step: Any, item: Item) -> Any:
    """The image step as it runs on `item` (`ImageMap.for_item`: under `auto`, the step with the
    engine this item takes), which a recipe records so a replay uses the engine that made the image."""
    for_item = getattr(step, "for_item", None)
    return step if for_item is None else for_item(item)


def _stored_size(item: Item) -> tuple[int, int]:
    """The stored image's size from its header; (0, 0) when it cannot be read (its decode then fails,
    in the engine chosen for a small image)."""
    from PIL import Image, UnidentifiedImageError

    if item.store is None or not item.has_image:
        return 0, 0
    try:
        with Image.open(io.BytesIO(item.store.get(item.base))) as image:
            return image.size
    except (OSError, KeyError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        return 0, 0


RecipeEntry = tuple[ImageTransform, dict[str, Any]]
"""An image step and the properties it read, applied to reproduce a derived image."""

NO_IMAGE = ""
"""`image_hash` and `base` of an item without pixels yet (a prompt): `item.has_image` is False."""
NO_IMAGE_ERROR = "item has no image yet (a prompt item: an image generation step gives it one)"

ORDER_PROPERTY = "order"
"""An integer property that orders items (written by `shuffle`); global steps see items sorted by it."""


def order_key(item: Item) -> tuple[int, str, str]:
    """The order global steps see items in: by `order` when set, then source path, then id (never
    arrival order, which parallel steps make random)."""
    order = item.props.get(ORDER_PROPERTY)
    return (order if isinstance(order, int) else -1, item.source or "", item.id)


class Item:
    """One image flowing through a pipeline.

    `id` is the sha256 of the original bytes and never changes. `image_hash` names the current image:
    the original's blob (= `id`) until a step changes the pixels, then a *derived id* (`~...`, from the
    step's cache key). A derived image is not stored: it is `base` (a blob) with the image steps in
    `recipe` applied again, which is exact because steps are deterministic. `props` holds the
    properties (`caption`, `tags`, `width`, ...); `source` is where the original came from, `name` the
    relative name sinks use for files, `format` the original's format (`JPEG`, `PNG`, ...).
    """

    __slots__ = (
        "_decoded",
        "_draft",
        "_store",
        "base",
        "format",
        "id",
        "image_hash",
        "name",
        "props",
        "recipe",
        "rendered",
        "source",
    )

    def __init__(
        self,
        id: str,
        image_hash: str | None = None,
        props: dict[str, Any] | None = None,
        source: str | None = None,
        name: str | None = None,
        store: BlobStore | None = None,
        format: str = "",
        base: str | None = None,
        recipe: tuple[RecipeEntry, ...] = (),
    ):
        self.id = id
        self.image_hash = id if image_hash is None else image_hash
        self.props = props if props is not None else {}
        self.source = source
        self.name = name or id[:16]
        self.format = format
        self.base = id if base is None else base
        self.recipe = recipe
        self.rendered: tuple[str, bytes] | None = None  # a sink's encoded file, made where pixels were
        self._store = store
        self._decoded: Image | None = None
        self._draft: tuple | None = None  # how `_decoded` was decoded: (draft step's prefix, engine)

    def __getitem__(self, key: str) -> Any:
        return self.props[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.props

    @property
    def width(self) -> int:
        return self.props["width"]

    @property
    def height(self) -> int:
        return self.props["height"]

    @property
    def has_image(self) -> bool:
        """False for an item without pixels yet (a prompt item): steps that read pixels refuse it,
        image sinks skip it."""
        return self.image_hash != NO_IMAGE

    @property
    def image(self) -> Image:
        """The current image as a PIL image, decoded once, upright (EXIF orientation applied).

        A derived image is recomputed: the base decoded exactly as its first image step decoded it
        (see `ImageMap.draft_scale`), in that step's image engine, then every step of the recipe
        applied again.
        """
        return self.pixels(engines.get("pillow"))

    def pixels(self, engine: ImageEngine) -> Any:
        """The current image as `engine`'s image type (see `core/engines`); an original not decoded
        yet is decoded by `engine`."""
        if self._decoded is None:
            if self.recipe:
                image = self._decode(self.recipe[0][0])
                for step, props in self.recipe:  # each step gets its engine's image
                    image = engine_of(step).adopt(image)
                    image = step.transform(image, Item(self.id, None, props, self.source, self.name))
                self._decoded = engines.owner(image).realize(image)
            else:
                self._decoded = self._decode(None, engine)
        if not engine.owns(self._decoded):
            self._decoded = engine.adopt(self._decoded)
        return self._decoded

    def realize_pixels(self) -> None:
        """Compute the pixels now if they are a lazy engine's (a vips decode not read yet): decode errors
        surface here, and the image may then be read any number of times."""
        if self._decoded is not None:
            self._decoded = engines.owner(self._decoded).realize(self._decoded)

    def pixels_for(self, step: ImageTransform) -> Any:
        """The image as input to image step `step`, in its engine. An underived image is decoded as
        the step decodes it, at the scale it asks for, by its engine: a replayed recipe decodes the
        same way (its first step's), so both give identical pixels."""
        engine = engine_of(step)
        if self.recipe:
            return self.pixels(engine)
        key = _decode_key(step, engine)
        # a step that asks for no draft takes the decode already there, if its engine made it
        usable = self._draft == key if step.wants_draft else (self._draft or key)[1] == engine.name
        if self._decoded is None or not usable:
            self._decoded = self._decode(step, engine)
        return self.pixels(engine)

    def _decode(self, step: ImageTransform | None, engine: ImageEngine | None = None) -> Any:
        if self.base == NO_IMAGE:
            raise ItemError(NO_IMAGE_ERROR)
        if self._store is None:
            raise RuntimeError("item is not attached to a blob store")
        engine = engine or engine_of(step)
        draft = step.draft_scale if step is not None and step.wants_draft else None
        self._draft = _decode_key(step, engine)
        shared = getattr(_decodes, "shared", None)
        if shared is None:  # a lazy engine's image (vips) is read once, by the step that asked
            return engine.decode(self._store.get(self.base), draft)
        key = (self.base, self._draft)
        if shared.get("key") != key:  # one entry: siblings arrive together, others never wait in memory
            shared["image"] = None
            image = engine.decode(self._store.get(self.base), draft)
            shared["image"], shared["key"] = (None if engine.lazy else image), key
            return image
        if shared["image"] is None:  # a sibling of a lazy decode (read once): decoded again, kept
            shared["image"] = engine.realize(engine.decode(self._store.get(self.base), draft))
        return shared["image"]

    @property
    def store(self) -> BlobStore | None:
        """The blob store the item reads from (None in a pool worker before `attach`)."""
        return self._store

    def array(self, name: str) -> Any:
        """The numpy array stored in property `name` (see `core/arrays.py`)."""
        from captionary.core.arrays import item_array

        return item_array(self, name)

    def attach(self, store: BlobStore) -> Item:
        self._store = store
        return self

    def evolve(self, updates: dict[str, Any] | None = None) -> Item:
        """A copy with updated properties (same image, decoded pixels shared)."""
        props = {**self.props, **updates} if updates else self.props
        new = Item(
            self.id,
            self.image_hash,
            props,
            self.source,
            self.name,
            self._store,
            self.format,
            self.base,
            self.recipe,
        )
        new._decoded, new._draft = self._decoded, self._draft
        return new

    _PICKLED = ("id", "image_hash", "props", "source", "name", "format", "base", "recipe", "rendered")

    def drop_pixels(self) -> None:
        """Forget the decoded image (decoded again if asked for): frees its memory at once."""
        self._decoded = None
        self._draft = None

    def __getstate__(self) -> tuple:  # pixels never cross processes
        return tuple(getattr(self, name) for name in self._PICKLED)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self._PICKLED, state, strict=True):
            setattr(self, name, value)
        self._store = None
        self._decoded = None
        self._draft = None

    def __repr__(self) -> str:
        return f"Item({self.id[:12]}, name={self.name!r}, props={self.props!r})"


_decodes = threading.local()


def _decode_key(step: ImageTransform | None, engine: ImageEngine) -> tuple[bytes | None, str]:
    """How an original is decoded for `step`: the draft step's cache prefix (None: full size) and
    the engine's name. Pixels decoded another way are decoded again."""
    wants = step is not None and step.wants_draft
    return (step.cache_prefix if wants else None, engine.name)


@contextlib.contextmanager
def sharing_decodes() -> Iterator[None]:
    """Within the block (in this thread), consecutive items with the same base decode it once: the
    children of one parent (crops, a flip) replay their recipes from one decoded original. Only the
    latest base is kept. Steps never modify their input image in place, so sharing it is safe."""
    _decodes.shared = {}
    try:
        yield
    finally:
        _decodes.shared = None


def decode_image(data: bytes, draft: Callable[[int, int], float | None] | None = None) -> Image:
    """Decode with Pillow (so truncation is caught here) and apply EXIF orientation.

    `draft(width, height)` (upright size) may return a scale < 1: a JPEG is then decoded at the
    smallest DCT scale that keeps at least that much of its size, which is several times faster.
    """
    return engines.get("pillow").decode(data, draft)
