"""Story files: a TOML file naming the request, the components and their options.

::

    [story]                     # fields of StoryRequest
    seed = 7
    width = 64
    height = 64
    style = "Comic book"
    characters = "[Mia] a girl with a red scarf"
    script = \"\"\"
    [Mia] finds a map in the attic #Mia finds an old map.
    \"\"\"

    [defaults]                  # given to every component that takes the option
    preset = "auto"

    [planner]
    name = "script"

    [[generators]]
    name = "diffusers-image"
    steps = 20

    [[composers]]
    name = "comic"
    layout_seed = 3

Tracks instead of ``[[generators]]`` (any number per modality; docs/story-files.md)::

    [tracks.frames]
    generator = { name = "storydiffusion", steps = 30 }

    [tracks.ambience]
    planner = "audiostory"             # a track planner: this track's cues (timed sound events)
    tokenizers = ["audiostory-bridge"]
    generator = "audiostory"
    text = "{ambience}"
    gain = -6

    [timing]                           # storysdk.timeline.Timing
    mode = "plan"

    [mix]                              # storysdk.mixing.Mix
    loudness = -16.0

Relative image paths in ``[story]`` (``start_image``, characters' ``reference_image``) are
resolved against the story file's folder.

Every mistake in the file itself is one :class:`~storysdk.errors.ConfigError` naming the file
and the section or field, raised before any component is built: a file that is not UTF-8 (the
byte and its line), not TOML (the line), empty, a section that is not a table, a ``[story]``
field of the wrong type or out of range, a character without ``name``, an unknown key in
``[output]``.

Component options are checked against each component's declared options when the pipeline
is built (``storysdk plugins --options NAME`` lists them): an unknown name gets a "did you
mean", a former name (``seed``) the name that replaced it, a bad value the rule it breaks.
A ``[defaults]`` key that no component of the file takes is an error too (a typo there would
otherwise change nothing); the command line's ``--preset``/``--device``/``--dtype`` are
runtime options instead, given to the components that take them and skipped elsewhere.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError
from .model import StoryRequest, _read_text_file, _shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["StoryFile", "load_story_file", "parse_story_file"]

TOP_LEVEL = ("story", "defaults", "planner", "tokenizers", "generators", "tracks", "timing", "mix", "composers",
             "output")
#: The keys of ``[output]``.
OUTPUT_KEYS = ("dir",)


@attrs.define
class StoryFile:
    """A parsed story file: the request and the component specs, ready for :class:`Pipeline`."""

    request: StoryRequest
    planner: dict[str, Any]
    tokenizers: list[dict[str, Any]] = attrs.field(factory=list)
    generators: list[dict[str, Any]] = attrs.field(factory=list)
    composers: list[dict[str, Any]] = attrs.field(factory=list)
    tracks: dict[str, dict[str, Any]] | None = None
    timing: dict[str, Any] = attrs.field(factory=dict)
    mix: dict[str, Any] = attrs.field(factory=dict)
    defaults: dict[str, Any] = attrs.field(factory=dict)
    output: dict[str, Any] = attrs.field(factory=dict)
    path: Path | None = None

    def pipeline(
        self, *, registry: Any = None, defaults: Mapping[str, Any] | None = None, cache: Any = None
    ) -> Any:
        """Build the :class:`~storysdk.pipeline.Pipeline` this file describes.

        The file's ``[defaults]`` are the pipeline's strict ``defaults`` (a key no component
        takes is a :class:`ConfigError` with a suggestion). ``defaults`` here are runtime
        options (the CLI's ``--preset``, a server's or a batch's settings): they go to every
        component that takes them, are skipped by the others, and override the file's
        ``[defaults]`` of the same name; ``cache`` is a :class:`~storysdk.cache.ComponentCache`
        to take built components from.
        """
        from .pipeline import Pipeline

        runtime = dict(defaults or {})
        own = {k: v for k, v in self.defaults.items() if k not in runtime}
        return Pipeline(
            planner=self.planner,
            tokenizers=self.tokenizers,
            generators=self.generators,
            composers=self.composers,
            tracks=self.tracks,
            timing=self.timing,
            mix=self.mix,
            registry=registry,
            defaults=own,
            runtime=runtime,
            cache=cache,
        )


def _component(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str) and value.strip():
        return {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table with a 'name' key (or just a name), got {_shown(value)}")
    if "name" not in value or not isinstance(value["name"], str) or not value["name"].strip():
        got = f", got name = {_shown(value['name'])}" if "name" in value else ""
        raise ConfigError(
            f"{where} needs name = \"<registered component>\"{got}; see 'storysdk plugins' for names"
        )
    return dict(value)


def _components(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"[[{key}]] must be an array of tables, got {_shown(value)}")
    return [_component(v, f"[[{key}]] #{i + 1}") for i, v in enumerate(value)]


def _tracks(data: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The ``[tracks.<name>]`` tables, their components normalised (a name or a table)."""
    if "tracks" not in data:
        return None
    value = data["tracks"]
    if isinstance(value, list):
        raise ConfigError(
            "tracks are named tables: write [tracks.frames] (with generator = ...), not [[tracks]]"
        )
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"[tracks] must hold [tracks.<name>] tables, got {_shown(value)}")
    from .options import validate_options
    from .tracks import TrackSettings, check_template, check_track_name, split_track_table

    out: dict[str, dict[str, Any]] = {}
    for name, table in value.items():
        where = f"[tracks.{name}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table with a generator, got {_shown(table)}")
        try:  # the track's name, keys and settings, before any component is built
            check_track_name(name)
            _, settings = split_track_table(name, table)
            check_template(validate_options(TrackSettings, settings, kind="track", name=name).text, track=name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        track = dict(table)
        if "generator" in track:
            track["generator"] = _component(track["generator"], f"{where} generator")
        if "planner" in track:
            track["planner"] = _component(track["planner"], f"{where} planner")
        if "tokenizers" in track:
            toks = track["tokenizers"]
            toks = [toks] if isinstance(toks, (str, Mapping)) else toks
            if not isinstance(toks, list):
                raise ConfigError(f"{where} tokenizers must be an array of names or tables, got {_shown(toks)}")
            track["tokenizers"] = [_component(t, f"{where} tokenizers #{i + 1}") for i, t in enumerate(toks)]
        out[str(name)] = track
    return out


def _loads(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}; fix the line it names") from exc
    except ValueError as exc:  # an integer with more digits than Python converts
        raise ConfigError(
            f"{source} holds a number too long to read ({exc.args[0].split(':')[0]}); shorten it"
        ) from exc
    except RecursionError:
        raise ConfigError(f"{source} is nested too deeply to be a story file; flatten its arrays and tables") from None


def _table(data: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{source}: [{key}] must be a table (a [{key}] line followed by key = value lines), got {key} = {_shown(value)}"
        )
    return dict(value)


def _output(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    from .options import suggest

    output = _table(data, "output", source)
    for key in output:
        if key not in OUTPUT_KEYS:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [output].{suggest(key, OUTPUT_KEYS)} Known keys: {', '.join(OUTPUT_KEYS)}"
            )
    folder = output.get("dir")
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise ConfigError(
            f"{source}: [output] dir must be a folder path (a string, e.g. dir = \"out/mia\"), got {_shown(folder)}"
        )
    return output


def _check_timing_and_mix(timing: Mapping[str, Any], mix: Mapping[str, Any], source: str) -> None:
    """``[timing]`` and ``[mix]`` checked against their declarations, naming the file and section."""
    from .mixing import Mix
    from .timeline import Timing, check_timing
    from .tracks import validate_settings

    checked = validate_settings(Timing, timing, what=f"{source}: [timing]")
    try:
        check_timing(checked)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"{source}: [timing]: {exc}") from None
    validate_settings(Mix, mix, what=f"{source}: [mix]")


def parse_story_file(text: str, *, base_dir: Path | None = None, source: str = "story file") -> StoryFile:
    """Parse the TOML text of a story file (``base_dir`` resolves relative image paths).

    Every mistake is a :class:`ConfigError` that starts with ``source`` and names the section
    or field.
    """
    from .options import suggest

    if not isinstance(text, str):
        raise ConfigError(f"{source}: a story file's text must be a string, got {type(text).__name__}; decode it first")
    data = _loads(text, source)
    if not data:
        raise ConfigError(
            f"{source} is empty; a story file needs at least a [story] table with a script or a prompt "
            "(see examples/ for story files)"
        )
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {', '.join(unknown)};{suggest(unknown[0], TOP_LEVEL)} "
            f"known sections: {', '.join(TOP_LEVEL)}"
        )
    story = _table(data, "story", source)
    misplaced = sorted(set(story) & set(TOP_LEVEL))
    if misplaced:
        key = misplaced[0]
        raise ConfigError(
            f"{source}: [story] has a key {key!r}, which is a section name: a key = value line written "
            f"after [story] belongs to [story]; move it above [story], or write it as its own [{key}] section"
        )
    if base_dir is not None:
        if isinstance(story.get("start_image"), str) and not story["start_image"].startswith("data:"):
            story["start_image"] = str((base_dir / story["start_image"]).resolve())
        if isinstance(story.get("characters"), list):
            for ch in story["characters"]:
                ref = ch.get("reference_image") if isinstance(ch, Mapping) else None
                if isinstance(ref, str) and not ref.startswith("data:"):
                    ch["reference_image"] = str((base_dir / ref).resolve())
    try:
        request = StoryRequest.from_dict(story)
    except ConfigError as exc:
        raise ConfigError(f"{source}: [story] {exc}") from exc
    defaults = _table(data, "defaults", source)
    output = _output(data, source)
    timing = _table(data, "timing", source)
    mix = _table(data, "mix", source)
    _check_timing_and_mix(timing, mix, source)
    try:
        planner = _component(data.get("planner", {"name": "script"}), "[planner]")
        tokenizers = _components(data, "tokenizers")
        generators = _components(data, "generators")
        composers = _components(data, "composers")
        tracks = _tracks(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    if tracks is not None and generators:
        raise ConfigError(
            f"{source}: give [tracks.<name>] tables or [[generators]], not both; with tracks every generator "
            "belongs to a track: [tracks.frames] generator = \"diffusers-image\""
        )
    pace = timing.get("track")
    if tracks is not None and timing.get("mode") == "track" and pace not in tracks:
        raise ConfigError(
            f"{source}: [timing]: timing track {pace!r} is not one of the pipeline's tracks ({', '.join(tracks)})."
            f"{suggest(str(pace), tracks)} Name one of the [tracks.<name>] tables"
        )
    return StoryFile(
        request=request,
        planner=planner,
        tokenizers=tokenizers,
        generators=generators,
        composers=composers,
        tracks=tracks,
        timing=timing,
        mix=mix,
        defaults=defaults,
        output=output,
    )


def load_story_file(path: str | Path) -> StoryFile:
    """Read and parse a story file from disk (UTF-8; a byte-order mark is allowed)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"story file {str(path)!r} is a folder; give the path of a .toml story file (see examples/)")
    if not path.is_file():
        raise ConfigError(f"story file {str(path)!r} does not exist; see examples/ for story files")
    text = _read_text_file(path, what="story file")
    sf = parse_story_file(text, base_dir=path.parent, source=str(path))
    sf.path = path
    return sf
