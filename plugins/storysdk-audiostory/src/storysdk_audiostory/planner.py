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

from storysdk.errors import ConfigError
from storysdk.interfaces import Planner
from storysdk.model import Scene, StoryPlan, StoryRequest, Tokens

from . import constants as C

if TYPE_CHECKING:
    from .grammar import SpecialIds
    from .loading import PlannerRuntime

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

    Options: ``preset`` ("tiny" or released weights), ``checkpoint`` (AudioStory release folder),
    ``base_llm`` (local Qwen2.5-3B-Instruct folder; default from the checkpoint's config),
    ``max_new_tokens`` (1600), ``one_pass`` (append query blocks in one forward pass; False =
    upstream's forced single steps), ``prompt_seed`` (0: picks the opener as upstream) or ``lead``,
    ``duration`` (total seconds when the request has none), ``response`` (teacher-forced answer),
    ``repair`` (documented repairs of bad durations, see :mod:`.timing`, else errors),
    ``total_tolerance`` (0.25), ``crossfade`` (3.0 s, for the clip-length check), ``device``, ``dtype``.
    """

    name = "audiostory"
    description = "AudioStory: an LLM splits an instruction into timed audio events with bridging queries"
    needs_gpu = True
    tiny_preset = True
    produces: ClassVar[str] = QUERIES_KIND

    def __init__(
        self,
        *,
        preset: str | None = None,
        checkpoint: str | None = None,
        base_llm: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = C.MAX_NEW_TOKENS,
        one_pass: bool = True,
        prompt_seed: int = 0,
        lead: str | None = None,
        duration: float | None = None,
        response: str | None = None,
        repair: bool = True,
        total_tolerance: float = 0.25,
        crossfade: float = C.CROSSFADE_SECONDS,
        seed: int = 0,
    ) -> None:
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if duration is not None and not duration > 0:
            raise ConfigError(f"duration must be a positive number of seconds, got {duration}")
        if not total_tolerance >= 0:
            raise ConfigError(f"total_tolerance must be >= 0 (a fraction of the total), got {total_tolerance}")
        if crossfade < 0:
            raise ConfigError(f"crossfade must be >= 0 seconds, got {crossfade}")
        self.preset = preset
        self.checkpoint = checkpoint
        self.base_llm = base_llm
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = int(max_new_tokens)
        self.one_pass = bool(one_pass)
        self.prompt_seed = int(prompt_seed)
        self.lead = lead
        self.duration = duration
        self.response = response
        self.repair = bool(repair)
        self.total_tolerance = float(total_tolerance)
        self.crossfade = float(crossfade)
        self.seed = int(seed)
        self._rt: PlannerRuntime | None = None

    def runtime(self) -> PlannerRuntime:
        """Tokenizer + LLM, loaded on first use."""
        if self._rt is None:
            from .loading import load_planner_runtime

            self._rt = load_planner_runtime(
                preset=self.preset, checkpoint=self.checkpoint, base_llm=self.base_llm,
                device=self.device, dtype=self.dtype, seed=self.seed, component=self.name,
            )
        return self._rt

    def prompt_for(self, request: StoryRequest) -> tuple[str, str, float]:
        """(ChatML prompt, lead, total seconds) for ``request``."""
        story = (request.prompt or "").strip()
        if not story:
            raise ConfigError("the audiostory planner needs StoryRequest.prompt: the story to turn into audio events")
        total = request.duration if request.duration is not None else self.duration
        if total is None:
            raise ConfigError(
                "AudioStory plans to a total length: set StoryRequest.duration (seconds) or the planner's duration option"
            )
        instruction, lead = build_instruction(story, total, prompt_seed=self.prompt_seed, lead=self.lead)
        return chatml_prompt(instruction), lead, float(total)

    def plan(self, request: StoryRequest) -> StoryPlan:
        """Decode (or teacher-force) the events and build the plan (§1.4)."""
        from .decoding import greedy_decode, teacher_force
        from .grammar import parse_stream
        from .timing import resolve_durations

        prompt, lead, total = self.prompt_for(request)
        rt = self.runtime()
        tok, special = rt.tokenizer, rt.special
        prompt_ids = tok.encode(prompt, add_special_tokens=False)
        if self.response is not None:
            ids = expand_query_blocks(tok.encode(self.response, add_special_tokens=False), special)
            hidden = teacher_force(rt.llm, prompt_ids, ids)
            stop, passes = "response", 1
        else:
            result = greedy_decode(rt.llm, prompt_ids, special, max_new_tokens=self.max_new_tokens, one_pass=self.one_pass)
            ids, hidden, stop, passes = result.ids, result.hidden, result.stop, result.forward_passes

        def decode(part: Any) -> str:
            return tok.decode(list(part), skip_special_tokens=False)

        parsed = parse_stream(ids, special, decode, repair=self.repair)
        durations, notes = resolve_durations(
            [e.duration for e in parsed.events], total, max_clip=rt.max_clip_seconds,
            crossfade=self.crossfade, tolerance=self.total_tolerance, repair=self.repair,
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
