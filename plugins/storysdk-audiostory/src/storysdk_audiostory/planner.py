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
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import field_validator
from storysdk.errors import ConfigError
from storysdk.interfaces import PlanContext, Planner
from storysdk.model import Scene, StoryPlan, StoryRequest, Tokens
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
    ``duration``, ``response`` (a teacher-forced answer), ``repair``, ``total_tolerance`` (0.25),
    ``crossfade`` (3.0 s), and the device options ``preset``, ``device``, ``dtype``,
    ``weights_seed`` (tiny weights).
    """

    name = "audiostory"
    description = "AudioStory: an LLM splits an instruction into timed audio events with bridging queries"
    needs_gpu = True
    tiny_preset = True
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
            "weights cannot write one); each <t5>/<aud> opener gets its query tokens",
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
        from .decoding import greedy_decode, teacher_force
        from .grammar import parse_stream
        from .timing import resolve_durations

        o = self.options
        prompt, lead, total = self.prompt_for(request)
        rt = self.runtime()
        tok, special = rt.tokenizer, rt.special
        prompt_ids = tok.encode(prompt, add_special_tokens=False)
        if o.response is not None:
            ids = expand_query_blocks(tok.encode(o.response, add_special_tokens=False), special)
            ctx.report(0, 1, None, "teacher-forcing the response")
            hidden = teacher_force(rt.llm, prompt_ids, ids)
            stop, passes = "response", 1
        else:

            def report(done: int, total: int) -> None:
                ctx.report(done, total, None, f"{done}/{total} tokens")

            result = greedy_decode(rt.llm, prompt_ids, special, max_new_tokens=o.max_new_tokens, one_pass=o.one_pass,
                                   report=report)
            ids, hidden, stop, passes = result.ids, result.hidden, result.stop, result.forward_passes

        def decode(part: Any) -> str:
            return tok.decode(list(part), skip_special_tokens=False)

        parsed = parse_stream(ids, special, decode, repair=o.repair)
        durations, notes = resolve_durations(
            [e.duration for e in parsed.events], total, max_clip=rt.max_clip_seconds,
            crossfade=o.crossfade, tolerance=o.total_tolerance, repair=o.repair,
        )
        scenes = []
        for i, (event, d) in enumerate(zip(parsed.events, durations)):
            t5 = hidden[event.t5_positions[0] : event.t5_positions[1]].clone()
            aud = hidden[event.aud_positions[0] : event.aud_positions[1]].clone()
            if t5.shape[0] != special.num_t5 or aud.shape[0] != special.num_aud:
                raise ConfigError(f"event {i}: query hidden states are incomplete; raise max_new_tokens")
            tokens = Tokens(
                kind=QUERIES_KIND, made_by=self.name, tensors={"t5": t5, "aud": aud},
                metadata={"num_t5": special.num_t5, "num_aud": special.num_aud},
            )
            scenes.append(
                Scene(
                    index=i, prompt=event.caption, caption=event.caption, duration=round(d, 6),
                    metadata={"duration_text": event.duration_text, "repairs": [*event.problems, *notes[i]]},
                    tokens={QUERIES_KIND: tokens},
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
                "reasoning": parsed.reasoning,
                "generated_text": decode(ids),
                "stop": stop,
                "forward_passes": passes,
                "notes": list(parsed.notes),
            },
        )
