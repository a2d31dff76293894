"""Exceptions raised while reading a dataset release or preparing it; messages say how to fix it."""

from __future__ import annotations


class DataCardError(ValueError):
    """Base class: something about a dataset release, a card or a prepared folder is wrong."""


class CardError(DataCardError):
    """A card is missing or its front matter is malformed."""


class ReleaseLayoutError(DataCardError):
    """The release folder does not look like the dataset the card describes."""


class AnnotationError(DataCardError):
    """An annotation file (CSV) cannot be read or has a row that breaks the documented format."""


class MediaToolError(DataCardError):
    """ffmpeg or PyAV is missing or failed on a clip."""


class LeakageError(DataCardError):
    """A source video (or a clip) appears on both sides of a split."""
