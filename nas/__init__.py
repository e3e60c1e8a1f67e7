"""fer-nas: genetic neural-architecture search for facial expression recognition.

The Python API (``nas.search``, ``nas.resume``, ``nas.replay``, ``nas.report``, ``nas.tune``, ``nas.train``,
``nas.distill``, ``nas.export``, ``nas.demo``, ``nas.analyze``, ``nas.baselines``; see ``nas.api``) is imported
on first use, so that ``import nas.genome.grammar`` stays free of torch (and ``nas.analyze`` runs an exported
model without it).
"""

__version__ = "0.1.0"
__all__ = [
    "Result",
    "analyze",
    "baselines",
    "demo",
    "distill",
    "export",
    "replay",
    "report",
    "resume",
    "search",
    "train",
    "tune",
]


def __getattr__(name: str):
    if name in __all__:
        from nas import api

        return getattr(api, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
