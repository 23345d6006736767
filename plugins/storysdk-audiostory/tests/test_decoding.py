"""One-pass query blocks == upstream's forced single steps (docs/audiostory.md §1.4), and the planner."""

from __future__ import annotations

import pytest
import torch
from storysdk.model import StoryRequest
from storysdk_audiostory import constants as C
from storysdk_audiostory.decoding import greedy_decode, teacher_force
from storysdk_audiostory.planner import AudioStoryPlanner, build_instruction, expand_query_blocks
from storysdk_audiostory.streams import response_text

TOL = 1e-5  # float32, one chunked forward vs. single steps through the same KV cache


class _Inner(torch.nn.Module):
    def __init__(self, inner, log):
        super().__init__()
        self.inner, self.log = inner, log

    def forward(self, input_ids, **kw):
        self.log.append(int(input_ids[0, -1]))
        return self.inner(input_ids=input_ids, **kw)


class ScriptedLM:
    """A real tiny Qwen2 whose next-token choice is scripted on the last *fed* token (+100 logit),
    so both decoding modes see the same free choices; hidden states are the model's own."""

    def __init__(self, llm, table):
        self.log: list[int] = []
        self.model = _Inner(llm.model, self.log)
        self._head = llm.lm_head
        self.config = llm.config
        self.table = table
        self.gen_closes = 0
        self._llm = llm

    def parameters(self):
        return self._llm.parameters()

    def lm_head(self, h):
        logits = self._head(h)
        last = self.log[-1]
        nxt = self.table(last, self)
        if nxt is not None:
            logits = logits.clone()
            logits[..., nxt] += 100.0
        return logits


def _script(tok, special):
    a, b, five = (tok.encode(x, add_special_tokens=False)[0] for x in ("a", "b", "5"))

    def table(last, lm):
        if last == special.think_open:
            return a
        if last == a:
            return special.think_close
        if last == special.think_close:
            return special.gen_open
        if last == special.gen_open:
            return b
        if last == b:
            return special.ts_open
        if last == special.ts_open:
            return five
        if last == five:
            return special.ts_close
        if last == special.ts_close:
            return special.t5_open
        if last == special.t5_close:
            return special.aud_open
        if last == special.aud_close:
            return special.gen_close
        if last == special.gen_close:
            lm.gen_closes += 1
            return special.gen_open if lm.gen_closes < 2 else special.im_end
        return None

    return table


def test_one_pass_equals_forced_single_steps(planner_rt):
    tok, special, llm = planner_rt.tokenizer, planner_rt.special, planner_rt.llm
    prompt = tok.encode("<|im_start|>user\nrain<|im_end|>\n<|im_start|>assistant\n<|think|>", add_special_tokens=False)
    one = greedy_decode(ScriptedLM(llm, _script(tok, special)), prompt, special, max_new_tokens=400, one_pass=True)
    step = greedy_decode(ScriptedLM(llm, _script(tok, special)), prompt, special, max_new_tokens=400, one_pass=False)
    assert one.stop == step.stop == "im_end"
    assert one.ids == step.ids
    assert one.ids.count(special.t5_open) == 2 and one.ids.count(special.aud_close) == 2
    n = min(len(one.hidden), len(step.hidden))
    assert n >= len(one.ids) - 1
    assert torch.allclose(one.hidden[:n], step.hidden[:n], atol=TOL, rtol=0)
    # each event saves N+1 + M+1 forward passes (docs/audiostory.md §1.4 tip)
    assert step.forward_passes - one.forward_passes == 2 * (special.num_t5 + 1 + special.num_aud + 1)
    # teacher forcing the same response gives the same states
    forced = teacher_force(llm, prompt, one.ids)
    assert torch.allclose(forced[:n], one.hidden[:n], atol=TOL, rtol=0)


def test_forced_block_in_single_step_mode(planner_rt):
    """Upstream's processor: after <t5> the next ids are forced even against the model's logits."""
    tok, special, llm = planner_rt.tokenizer, planner_rt.special, planner_rt.llm
    prompt = tok.encode("<|im_start|>assistant\n<|think|>", add_special_tokens=False)
    lm = ScriptedLM(llm, lambda last, _: special.t5_open if last == special.think_open else special.im_end)
    res = greedy_decode(lm, prompt, special, max_new_tokens=200, one_pass=False)
    assert res.ids[: special.num_t5 + 2] == special.t5_block


def test_budget_cuts_stream(planner_rt):
    tok, special, llm = planner_rt.tokenizer, planner_rt.special, planner_rt.llm
    prompt = tok.encode("<|im_start|>assistant\n<|think|>", add_special_tokens=False)
    res = greedy_decode(llm, prompt, special, max_new_tokens=7)
    assert len(res.ids) == 7 and res.stop == "max_new_tokens"


def test_instruction_and_prompt():
    text, lead = build_instruction("A dog barks.", 22.8, prompt_seed=0)
    import random

    random.seed(0)
    assert lead == random.choice(C.GEN_PROMPT_ALL)  # upstream: random.seed(args.seed); random.choice
    assert text == (lead + "A dog barks.").strip() + " The total duration is 22.8 seconds."
    p = AudioStoryPlanner(preset="tiny")
    prompt, _, total = p.prompt_for(StoryRequest(prompt="A dog barks.", duration=50))
    assert total == 50.0 and prompt.endswith("The total duration is 50.0 seconds.<|im_end|>\n<|im_start|>assistant\n<|think|>")
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")


def test_planner_with_response_builds_scenes(planner_rt):
    planner = AudioStoryPlanner(preset="tiny", response=response_text("two", [("A dog barks", 4.0), ("Rain", 6.0)]))
    planner._rt = planner_rt
    plan = planner.plan(StoryRequest(prompt="A dog barks, then rain.", duration=10.0))
    assert [(s.index, s.caption, s.prompt, s.duration) for s in plan.scenes] == [
        (0, "A dog barks", "A dog barks", 4.0), (1, "Rain", "Rain", 6.0)]
    q = plan.scenes[1].tokens["audiostory-queries"]
    assert q.kind == "audiostory-queries" and tuple(q["t5"].shape) == (64, 32) and tuple(q["aud"].shape) == (8, 32)
    # the states are those of the <t5_k> inputs in context (independent check by teacher forcing)
    tok, special = planner_rt.tokenizer, planner_rt.special
    prompt_ids = tok.encode(plan.metadata["instruction"], add_special_tokens=False)
    ids = expand_query_blocks(tok.encode(planner.options.response, add_special_tokens=False), special)
    full = planner_rt.llm.model(input_ids=torch.tensor([prompt_ids + ids])).last_hidden_state[0, len(prompt_ids):]
    second_t5 = [i for i, t in enumerate(ids) if t == special.t5_open][1]
    assert torch.allclose(q["t5"], full[second_t5 + 1 : second_t5 + 65], atol=TOL)
    assert plan.metadata["reasoning"] == "two"


def test_planner_errors(planner_rt):
    planner = AudioStoryPlanner(preset="tiny", max_new_tokens=20)
    planner._rt = planner_rt
    with pytest.raises(Exception, match="no complete <\\|gen\\|> event.*response="):
        planner.plan(StoryRequest(prompt="A dog barks.", duration=10.0))
    with pytest.raises(Exception, match="StoryRequest.duration"):
        planner.plan(StoryRequest(prompt="A dog barks."))
    with pytest.raises(Exception, match="needs StoryRequest.prompt"):
        planner.plan(StoryRequest(duration=3.0))
