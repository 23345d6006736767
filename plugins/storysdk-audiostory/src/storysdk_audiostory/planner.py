"""Planner ``audiostory``: the LLM decomposes an instruction into timed audio events (§1.3-§1.4).

The instruction is built as upstream ``evaluate/inference.py`` does: an opener chosen from the
20 fixed leads with ``random.seed(prompt_seed)`` (0), the story text, and
``" The total duration is {T} seconds."``; wrapped in raw ChatML with the assistant turn opened
by ``<|think|>``. Greedy decoding with a KV cache (:mod:`.decoding`) stops at ``<|im_end|>``;
the stream is parsed (:mod:`.grammar`), durations are checked or repaired (:mod:`.timing`) and
each event becomes a :class:`~storysdk.Scene` (caption -> prompt and caption, duration) carrying
``Tokens(kind="audiostory-queries")`` with the hidden states at its N ``<t5_k>`` and M
``<aud_k>`` positions.

``response=`` teacher-forces a given assistant response instead of decoding (the LLM still
computes the query states in context): for re-rendering an edited event list, and for the tiny
preset, whose random weights cannot write a plan. In it, each ``<t5>`` / ``<aud>`` opener is
followed automatically by its N / M query tokens and closer.

**A track's planner** (``plans_tracks``): :meth:`AudioStoryPlanner.plan_track` writes the sound
events of one track of a story planned by another planner (a ``[tracks.ambience]`` with
``planner = "audiostory"``). Each scene with a text on the track gets its own instruction (the
text and the scene's span on the story's timeline as the total), its own decode, and its events
as cues filling the scene's span (docs/audiostory.md §10). Teacher-forced per scene:
``responses`` (one answer per scene with a text, in plan order) or ``response`` (the same
answer for every scene; its durations are fitted to each span).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
from pydantic import field_validator
from storysdk.errors import ConfigError
from storysdk.interfaces import PlanContext, Planner, TrackContext
from storysdk.model import Cue, Scene, StoryPlan, StoryRequest, Tokens
from storysdk.options import Field

from . import constants as C
from .options import AudioStoryDeviceOptions, folder_path

if TYPE_CHECKING:
    from .grammar import SpecialIds
    from .runtime import PlannerRuntime

__all__ = ["QUERIES_KIND", "AudioStoryPlanner", "build_instruction", "expand_query_blocks"]

QUERIES_KIND = "audiostory-queries"


def build_instruction(story: str, total: float, *, prompt_seed: int = 0, lead: str | None = None) -> tuple[str, str]:
    """(instruction, lead): ``(lead + story).strip() + " The total duration is {T} seconds."`` (§1.3)."""
    if lead is None:
        lead = random.Random(prompt_seed).choice(C.GEN_PROMPT_ALL)
    text = (lead + story).strip()
    return text + C.TOTAL_DURATION_SENTENCE.format(total=float(total)), lead


def chatml_prompt(instruction: str) -> str:
    """System turn, user turn, assistant turn opened with ``<|think|>`` (§1.3)."""
    return C.SYSTEM_MESSAGE + C.USER_TURN.format(instruction=instruction) + C.ASSISTANT_OPEN


def expand_query_blocks(ids: list[int], special: SpecialIds) -> list[int]:
    """Insert the N (M) query ids and the closer after every ``<t5>`` (``<aud>``) opener.

    Query ids or closers already written after an opener are replaced, so a response may be
    written with or without them.
    """
    out: list[int] = []
    skip: set[int] = set()
    for tok in ids:
        if tok in skip:
            continue
        skip = set()
        if tok == special.t5_open:
            out.extend(special.t5_block)
            skip = {*special.t5_queries, special.t5_close}
        elif tok == special.aud_open:
            out.extend(special.aud_block)
            skip = {*special.aud_queries, special.aud_close}
        else:
            out.append(tok)
    return out


class AudioStoryPlanner(Planner):
    """AudioStory's LLM event planner (docs/audiostory.md §1.3-§1.5).

    Options (declared in :class:`AudioStoryPlanner.Options`; ``storysdk plugins --options
    audiostory``): ``checkpoint`` (the AudioStory release folder; needed unless ``preset="tiny"``),
    ``base_llm``, ``max_new_tokens`` (1600), ``one_pass``, ``prompt_seed`` (0) or ``lead``,
    ``duration``, ``response`` (a teacher-forced answer), ``responses`` (one per scene, as a
    track's planner), ``repair``, ``total_tolerance`` (0.25), ``crossfade`` (3.0 s), and the
    device options ``preset``, ``device``, ``dtype``, ``weights_seed`` (tiny weights).

    As the story planner (:meth:`plan`) the events are the story's scenes; as a track's planner
    (:meth:`plan_track`, ``plans_tracks``) they are the track's cues, scene by scene.
    """

    name = "audiostory"
    description = "AudioStory: an LLM splits an instruction into timed audio events with bridging queries"
    needs_gpu = True
    tiny_preset = True
    plans_tracks: ClassVar[bool] = True
    produces: ClassVar[str] = QUERIES_KIND

    class Options(AudioStoryDeviceOptions):
        checkpoint: str | None = Field(
            None,
            description="the AudioStory release folder (config.yaml + pytorch_model.bin); needed unless preset='tiny'",
        )
        base_llm: str | None = Field(
            None, description="local Qwen2.5-3B-Instruct folder (None: the folder the checkpoint's config.yaml names)"
        )
        max_new_tokens: int = Field(
            C.MAX_NEW_TOKENS, ge=1, description="token budget of the LLM's answer (docs/audiostory.md §1.4)"
        )
        one_pass: bool = Field(
            True,
            description="append each query block in one forward pass (False: upstream's forced single steps; "
            "same states, more passes)",
        )
        prompt_seed: int = Field(
            0, description="picks the instruction's opener as upstream's random.seed does (docs/audiostory.md §1.3)"
        )
        lead: str | None = Field(None, description="the instruction's opener, instead of the one prompt_seed picks")
        duration: float | None = Field(
            None, gt=0, description="total seconds of the story when StoryRequest.duration is unset"
        )
        response: str | None = Field(
            None,
            description="an assistant response to teacher-force instead of decoding (the tiny preset's random "
            "weights cannot write one); each <t5>/<aud> opener gets its query tokens; as a track's planner, the "
            "same response for every scene",
        )
        responses: list[str] | None = Field(
            None,
            description="as a track's planner: one assistant response to teacher-force per scene with a text on "
            "the track, in plan order (instead of response)",
        )
        repair: bool = Field(
            True, description="make the documented repairs of a bad stream or bad durations (False: raise instead)"
        )
        total_tolerance: float = Field(
            0.25, ge=0, description="how far the events' sum may miss the requested total, as a fraction of it"
        )
        crossfade: float = Field(
            C.CROSSFADE_SECONDS,
            ge=0,
            description="crossfade padding (seconds) the generator adds to every clip but the last, for the "
            "clip-length check (docs/audiostory.md §1.7)",
        )

        _paths = field_validator("checkpoint", "base_llm", mode="before")(folder_path)

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._rt: PlannerRuntime | None = None

    def runtime(self) -> PlannerRuntime:
        """Tokenizer + LLM, loaded on first use."""
        if self._rt is None:
            from .loading import load_planner_runtime

            o = self.options
            self._rt = load_planner_runtime(
                preset=o.preset, checkpoint=o.checkpoint, base_llm=o.base_llm, device=o.device, dtype=o.dtype,
                weights_seed=o.weights_seed, component=f"planner {self.name!r}",
            )
        return self._rt

    def prompt_for(self, request: StoryRequest) -> tuple[str, str, float]:
        """(ChatML prompt, lead, total seconds) for ``request``."""
        o = self.options
        story = (request.prompt or "").strip()
        if not story:
            raise ConfigError("the audiostory planner needs StoryRequest.prompt: the story to turn into audio events")
        total = request.duration if request.duration is not None else o.duration
        if total is None:
            raise ConfigError(
                "AudioStory plans to a total length: set StoryRequest.duration (seconds) or the planner's duration option"
            )
        instruction, lead = build_instruction(story, total, prompt_seed=o.prompt_seed, lead=o.lead)
        return chatml_prompt(instruction), lead, float(total)

    def plan(self, request: StoryRequest) -> StoryPlan:
        """Decode (or teacher-force) the events and build the plan (§1.4)."""
        return self.plan_with(request, PlanContext(request, self.name))

    def plan_with(self, request: StoryRequest, ctx: PlanContext) -> StoryPlan:
        """:meth:`plan`, reporting through ``ctx`` before every LLM forward call (the cancellation point)."""
        from .timing import resolve_durations

        o = self.options
        if o.responses is not None:
            raise ConfigError(
                "the audiostory planner's 'responses' (one per scene) is for a track's events; as the story "
                "planner, give one 'response' instead"
            )
        prompt, lead, total = self.prompt_for(request)
        rt = self.runtime()

        def report(done: int, n: int, message: str) -> None:
            ctx.report(done, n, None, message)

        run = self._decode(prompt, o.response, report)
        durations, notes = resolve_durations(
            [e.duration for e in run.parsed.events], total, max_clip=rt.max_clip_seconds,
            crossfade=o.crossfade, tolerance=o.total_tolerance, repair=o.repair,
        )
        scenes = []
        for i, (event, d) in enumerate(zip(run.parsed.events, durations)):
            scenes.append(
                Scene(
                    index=i, prompt=event.caption, caption=event.caption, duration=round(d, 6),
                    metadata={"duration_text": event.duration_text, "repairs": [*event.problems, *notes[i]]},
                    tokens={QUERIES_KIND: self._queries(run, event, f"event {i}")},
                )
            )
        return StoryPlan(
            scenes=scenes,
            title=request.prompt.strip()[:80],
            seed=request.seed,
            planner=self.name,
            metadata={
                "instruction": prompt,
                "lead": lead,
                "total_duration": total,
                "reasoning": run.parsed.reasoning,
                "generated_text": run.text,
                "stop": run.stop,
                "forward_passes": run.passes,
                "notes": list(run.parsed.notes),
            },
        )

    # -- the track planner -------------------------------------------------------------------
    def plan_track(self, plan: StoryPlan, ctx: TrackContext) -> list[Cue]:
        """AudioStory's timed sound events for each scene with a text on track ``ctx.track``.

        Per scene (in plan order): the instruction is built from the scene's track text and its
        span on ``ctx.timeline`` (:func:`build_instruction`, §1.3, the span rounded to 0.01 s),
        the LLM decodes the events (or teacher-forces ``responses[k]`` / ``response``), the
        stream is parsed (§1.4) and the durations repaired against the span
        (:func:`~.timing.resolve_durations`), then stretched to fill it exactly
        (:func:`~.timing.fit_durations`). Each event is a :class:`~storysdk.model.Cue` with the
        ``audiostory-queries`` tokens; indices run over the whole track in time order, so the
        generator pads every clip but the track's last with the crossfade (§1.7).
        """
        from .timing import fit_durations, resolve_durations

        o = self.options
        items = [(scene, text) for scene in plan.scenes if (text := ctx.text(scene)) is not None and text.strip()]
        responses: list[str | None]
        if o.responses is not None:
            if o.response is not None:
                raise ConfigError(
                    f"track {ctx.track!r}: the audiostory planner got both 'response' and 'responses'; give "
                    "'response' (the same answer for every scene) or 'responses' (one per scene), not both"
                )
            if len(o.responses) != len(items):
                raise ConfigError(
                    f"track {ctx.track!r}: the audiostory planner got {len(o.responses)} responses but "
                    f"{len(items)} scene(s) have a text on the track ({[s.index for s, _ in items]}); give one "
                    "response per such scene, in plan order"
                )
            responses = list(o.responses)
        else:
            responses = [o.response] * len(items)
        if not items:
            return []
        rt = self.runtime()
        order = sorted(items, key=lambda item: ctx.timeline.scene(item[0].index).start)
        last = order[-1][0].index  # the track's last clip is the only one without crossfade padding
        cues: list[Cue] = []
        by_scene: dict[int, list[Cue]] = {}
        for k, ((scene, text), response) in enumerate(zip(items, responses)):
            span = ctx.timeline.scene(scene.index)
            seconds = round(float(span.duration), 2)
            instruction, lead = build_instruction(text, seconds, prompt_seed=o.prompt_seed, lead=o.lead)

            def report(done: int, n: int, message: str, k: int = k, index: int = scene.index) -> None:
                ctx.report(done, n, index, f"scene {index} ({k + 1}/{len(items)}): {message}")

            where = f"track {ctx.track!r}, scene {scene.index}"
            try:
                run = self._decode(chatml_prompt(instruction), response, report)
            except ConfigError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            if not run.parsed.events:
                raise ConfigError(
                    f"{where}: the LLM wrote no sound events for the scene's text; rewrite the text to name "
                    "sounds, or teacher-force a response for it ('responses')"
                )
            try:
                durations, notes = resolve_durations(
                    [e.duration for e in run.parsed.events], float(span.duration), max_clip=rt.max_clip_seconds,
                    crossfade=o.crossfade, tolerance=o.total_tolerance, repair=o.repair,
                    pad_last=scene.index != last,
                )
                durations = fit_durations(
                    durations, float(span.duration), notes, max_clip=rt.max_clip_seconds, crossfade=o.crossfade,
                    repair=o.repair, pad_last=scene.index != last,
                )
            except ConfigError as exc:
                raise type(exc)(f"{where}: {exc}") from None
            start = float(span.start)
            mine = by_scene.setdefault(scene.index, [])
            for j, (event, d) in enumerate(zip(run.parsed.events, durations)):
                mine.append(
                    Cue(
                        index=0, prompt=event.caption, caption=event.caption, duration=round(d, 6),
                        start=round(start, 6), scene=scene.index,
                        metadata={
                            "event": j, "instruction": instruction, "lead": lead,
                            "duration_text": event.duration_text, "repairs": [*event.problems, *notes[j]],
                        },
                        tokens={QUERIES_KIND: self._queries(run, event, f"{where}, event {j}")},
                    )
                )
                start += d
        for scene, _ in order:  # indices in time order across the track
            for cue in by_scene[scene.index]:
                cue.index = len(cues)
                cues.append(cue)
        return cues

    # -- shared -----------------------------------------------------------------------------
    def _decode(self, prompt: str, response: str | None, report: Callable[[int, int, str], None]) -> _Run:
        """Decode (or teacher-force ``response``) after ``prompt`` and parse the stream (§1.4)."""
        from .decoding import greedy_decode, teacher_force
        from .grammar import parse_stream

        o = self.options
        rt = self.runtime()
        tok, special = rt.tokenizer, rt.special
        prompt_ids = tok.encode(prompt, add_special_tokens=False)
        if response is not None:
            ids = expand_query_blocks(tok.encode(response, add_special_tokens=False), special)
            report(0, 1, "teacher-forcing the response")
            hidden = teacher_force(rt.llm, prompt_ids, ids)
            stop, passes = "response", 1
        else:
            result = greedy_decode(rt.llm, prompt_ids, special, max_new_tokens=o.max_new_tokens, one_pass=o.one_pass,
                                   report=lambda done, n: report(done, n, f"{done}/{n} tokens"))
            ids, hidden, stop, passes = result.ids, result.hidden, result.stop, result.forward_passes

        def decode(part: Any) -> str:
            return tok.decode(list(part), skip_special_tokens=False)

        parsed = parse_stream(ids, special, decode, repair=o.repair)
        return _Run(ids=list(ids), hidden=hidden, stop=stop, passes=passes, parsed=parsed, text=decode(ids),
                    special=special)

    @staticmethod
    def _queries(run: _Run, event: Any, where: str) -> Tokens:
        """The ``audiostory-queries`` tokens of one event: the hidden states at its query positions."""
        special = run.special
        t5 = run.hidden[event.t5_positions[0] : event.t5_positions[1]].clone()
        aud = run.hidden[event.aud_positions[0] : event.aud_positions[1]].clone()
        if t5.shape[0] != special.num_t5 or aud.shape[0] != special.num_aud:
            raise ConfigError(f"{where}: query hidden states are incomplete; raise max_new_tokens")
        return Tokens(
            kind=QUERIES_KIND, made_by=AudioStoryPlanner.name, tensors={"t5": t5, "aud": aud},
            metadata={"num_t5": special.num_t5, "num_aud": special.num_aud},
        )


@attrs.define(eq=False)
class _Run:
    """One decoded (or teacher-forced) answer: ids, hidden states, why it stopped, the parse."""

    ids: list[int]
    hidden: Any
    stop: str
    passes: int
    parsed: Any
    text: str
    special: Any
