"""Generator families, one file each: ``glyph`` (built in), ``emu3``, ``janus``, ``causal_vq``."""

from __future__ import annotations


def tiny_generator(family: str, seed: int = 0):
    """A tiny random generator of ``family`` built in code in about a second (no download), for
    tests, benchmarks and trying the toolkit on a laptop."""
    from imagepref.errors import UnknownNameError

    if family == "glyph":
        from imagepref.policy.pretrain import micro_generator

        return micro_generator(seed=seed)
    if family == "emu3":
        from imagepref.policy.families.emu3 import Emu3Generator

        return Emu3Generator.tiny(seed=seed)
    if family == "janus":
        from imagepref.policy.families.janus import JanusGenerator

        return JanusGenerator.tiny(seed=seed)
    if family == "causal-vq":
        from imagepref.policy.families.causal_vq import CausalVQGenerator

        return CausalVQGenerator.tiny(seed=seed)
    raise UnknownNameError(f"no tiny build for family {family!r}; known: glyph, emu3, janus, causal-vq")
