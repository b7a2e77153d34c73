"""What a run gives a source (`Source.scan(ctx)`) and a sink (`Sink.open(ctx)`): typed, small contexts
instead of the executor's whole run state."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from captionary.core.workspace import Workspace
    from captionary.core.writer import DbWriter


@dataclass
class SourceContext:
    """A source's view of the run: the workspace, the run's database writer, and its progress.

    decodes_later: an image step later in the pipeline decodes every item anyway (so a source need not
    verify images by decoding them).
    """

    ws: Workspace
    writer: DbWriter
    run_id: int
    decodes_later: bool = False
    on_expect: Callable[[int], None] = field(default=lambda total: None, repr=False)
    count: Callable[[], int] = field(default=lambda: 0, repr=False)
    on_known: Callable[[Iterable[str]], None] = field(default=lambda items: None, repr=False)
    on_fresh: Callable[[int], None] = field(default=lambda count: None, repr=False)

    def known(self, items: Iterable[str]) -> None:
        """The items this source has on record from earlier runs (what it remembers it read): those
        this run does not see have left the workspace (`core/departures.py`, freed by `gc`)."""
        self.on_known(items)

    def expect(self, total: int) -> None:
        """How many records this source will produce in all (the progress bar's total)."""
        self.on_expect(total)

    def fresh(self, count: int) -> None:
        """`count` records will be read anew (not answered from the source's record): the executor may
        start what will compute them (worker processes) while the source reads."""
        if count:
            self.on_fresh(count)

    @property
    def produced(self) -> int:
        """Records this source has produced so far in this run."""
        return self.count()


@dataclass
class SinkContext:
    """A sink's view of the run: the workspace, the run's database writer, and the run's errors so far
    (dicts with `item`, `step`, `reason`, `source`; a sink keeps the files of items that failed)."""

    ws: Workspace
    writer: DbWriter
    run_id: int
    errors: list[dict] = field(default_factory=list)
    after_kill: bool = True
    """A run before this one ended without finishing (killed) and may have left temp files in output
    folders: a sink clears them. An executor that cannot tell leaves it True."""
