"""Kept training states: where a network's training waits between rungs, by the hash of its cache key.

In a run they are files in ``states/`` (``<key>-e<epochs>.pt``: the state after that many epochs; only
the most trained is kept), plus ``<key>-live.pt`` for a long training under way, checkpointed every epoch
by its worker; without a folder they live in memory for as long as the evaluator does.
"""

from __future__ import annotations

from pathlib import Path

from nas.rundir import atomic_write
from nas.training.loop import stable_copy


class KeptStates:
    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self._memory: dict[str, tuple[int, bytes]] = {}

    def kept(self, base: str) -> list[tuple[int, Path | None]]:
        """(epochs, file) of a network's kept states, fewest epochs first."""
        if self.folder is None:
            return [(self._memory[base][0], None)] if base in self._memory else []
        return sorted((int(p.stem.rsplit("-e", 1)[1]), p) for p in self.folder.glob(f"{base}-e*.pt"))

    def load(self, base: str, until: int) -> bytes | None:
        """The most trained kept state that does not go past ``until`` epochs."""
        usable = [(e, p) for e, p in self.kept(base) if e <= until]
        if not usable:
            return None
        path = usable[-1][1]
        return path.read_bytes() if path is not None else self._memory[base][1]

    def store(self, base: str, epochs: int, state: bytes) -> None:
        """Keep ``state`` as the network's, replacing any other it had (and its live checkpoint)."""
        if self.folder is None:
            self._memory[base] = (epochs, state)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{base}-e{epochs}.pt", state)
        self.discard_live(base)
        for e, path in self.kept(base):
            if e != epochs:
                path.unlink(missing_ok=True)

    def discard_live(self, base: str) -> None:
        """Remove a long training's live checkpoint (and its stable copy): kept, or never to be continued."""
        for path in (self.live(base), stable_copy(self.live(base))):
            path.unlink(missing_ok=True)

    def live(self, base: str) -> Path:
        """Where a long training of this network checkpoints every epoch (a folder is needed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{base}-live.pt"

    def file(self, base: str) -> Path | None:
        """The file of the network's most trained kept state, if kept on disk."""
        kept = self.kept(base)
        return kept[-1][1] if kept else None

    def drop(self, base: str) -> None:
        self._memory.pop(base, None)
        for _, path in self.kept(base):
            if path is not None:
                path.unlink(missing_ok=True)

    def keep_only(self, bases: set[str]) -> None:
        for base in set(self._memory) - bases:
            del self._memory[base]
        for path in self.folder.glob("*-e*.pt") if self.folder is not None else ():
            if path.stem.rsplit("-e", 1)[0] not in bases:
                path.unlink(missing_ok=True)

    def nbytes(self) -> int:
        """Disk (or memory) the kept states take."""
        if self.folder is None:
            return sum(len(b) for _, b in self._memory.values())
        return sum(p.stat().st_size for p in self.folder.glob("*.pt"))
