"""The one exception hierarchy of storysdk.

Every error the SDK raises on purpose is a :class:`StorySDKError`. Each message names the
problem *and* the fix, so that an app can show it to a person as it is.
"""

from __future__ import annotations

__all__ = [
    "BusyError",
    "CheckpointError",
    "ComponentError",
    "ConfigError",
    "JobCancelled",
    "OutputFolderError",
    "PluginError",
    "ScriptError",
    "StorySDKError",
    "UnknownComponentError",
]


class StorySDKError(Exception):
    """Base class of every error raised by storysdk and its plugins."""


class ConfigError(StorySDKError, ValueError):
    """A request, a story file or a component option is invalid (bad value, impossible size)."""


class ScriptError(ConfigError):
    """A story script (frame lines, character lines) is malformed.

    ``line`` is the 1-based line number in the text that was parsed (``None`` when the
    problem is not tied to one line) and ``field`` names which text it was in.
    """

    def __init__(self, message: str, *, line: int | None = None, field: str = "script") -> None:
        self.line = line
        self.field = field
        where = f"{field} line {line}: " if line is not None else f"{field}: "
        super().__init__(where + message)


class UnknownComponentError(StorySDKError, LookupError):
    """A component name is not registered."""


class ComponentError(StorySDKError):
    """A component broke its contract (wrong asset count, wrong modality, ...)."""


class PluginError(StorySDKError):
    """A plugin could not be loaded or registered."""


class CheckpointError(StorySDKError):
    """A checkpoint is missing, incomplete, or does not match the architecture.

    ``missing`` and ``unexpected`` list the offending tensor names when the problem is
    a key mismatch.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | tuple[str, ...] = (),
        unexpected: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        parts = [message]
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): " + ", ".join(self.missing[:50]))
            if len(self.missing) > 50:
                parts[-1] += f", ... (+{len(self.missing) - 50} more)"
        if self.unexpected:
            parts.append(
                f"unexpected keys ({len(self.unexpected)}): " + ", ".join(self.unexpected[:50])
            )
            if len(self.unexpected) > 50:
                parts[-1] += f", ... (+{len(self.unexpected) - 50} more)"
        super().__init__("\n".join(parts))


class OutputFolderError(StorySDKError):
    """The output folder holds a different story, or cannot be written."""


class BusyError(StorySDKError):
    """A bounded work queue is full (``storysdk serve`` answers 429); retry later."""


class JobCancelled(StorySDKError):
    """A queued or running job was cancelled on request; what it had written is kept."""
