from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ollm.events import (
    ChatMessage,
    ChatRequested,
    Message,
    PromptRendered,
    ReplyCompleted,
    RunnerOptions,
    ToolCall,
    ToolSchema,
)
from ollm.tokens import PRIMING, ROLE_OVERHEAD, Accounting, TokenCache, estimate_text


def test_the_fallback_counts_words_digits_marks_and_whitespace_runs():
    cases = {
        "": 0,
        "hello world": 2,
        "internationalization": 4,  # 20 letters: one token, and one per six after the first
        "JOB-90211": 7,  # a word, a mark, five digits
        "a  b\n": 4,  # a run of spaces and a newline count; one space does not
        "日本語": 3,  # ideographs: one each
        "привет": 2,  # other scripts: one per three letters
    }
    assert {text: estimate_text(text) for text in cases} == cases


def test_counts_are_cached_by_content():
    cache = TokenCache()
    cache.raw("hello world")
    cache.raw("hello world")
    cache.raw("other")
    assert (cache.hits, cache.misses) == (1, 2)
    assert cache.hit_rate == 1 / 3


def test_role_tool_call_and_tool_schema_overhead_are_counted():
    acc = Accounting(num_ctx=8192, model="m")
    acc.add(Message(id="m1", role="user", content="word " * 10))
    plain = acc.used()
    assert plain == 10 + ROLE_OVERHEAD + PRIMING
    acc.add(
        Message(
            id="m2",
            role="assistant",
            content="",
            tool_calls=(ToolCall(name="read_file", arguments='{"path": "src/app.py"}'),),
        )
    )
    with_call = acc.used()
    assert with_call > plain + ROLE_OVERHEAD
    acc.set_tools(
        (ToolSchema(name="read_file", description="Read a file", parameters='{"type":"object"}'),)
    )
    assert acc.used() > with_call


def test_a_reply_calibrates_and_anchors_and_a_low_count_is_a_truncation():
    acc = Accounting(num_ctx=8192, model="m")
    message = Message(id="m1", role="user", content="word " * 100)
    acc.add(message)

    def send(request_id: str) -> None:
        acc.on_request(
            ChatRequested(
                request_id=request_id,
                model="m",
                messages=(ChatMessage(role="user", content=message.content),),
                options=RunnerOptions(num_ctx=8192),
            )
        )

    send("r1")
    assert (
        acc.on_reply(
            ReplyCompleted(request_id="r1", content="ok", prompt_eval_count=160, eval_count=2)
        )
        is None
    )
    assert acc.factor == (160 - ROLE_OVERHEAD - PRIMING) / 100
    assert acc.used() == 160, "the counted prompt is exact"
    acc.add(Message(id="m2", role="assistant", content="ok"))
    assert acc.used() == 160 + 2 + ROLE_OVERHEAD, "the reply's length is eval_count"
    # The same prompt far below its context: a count that low is the estimate's error (Ollama
    # cuts only a prompt that does not fit), so it is no truncation.
    send("r2")
    assert acc.on_reply(ReplyCompleted(request_id="r2", content="", prompt_eval_count=130)) is None
    # Near its context (the server gave 150 tokens), the same low count is a truncation.
    acc.served["m"] = 150
    send("r3")
    truncated = acc.on_reply(ReplyCompleted(request_id="r3", content="", prompt_eval_count=20))
    assert truncated is not None
    sent, counted = truncated
    assert counted == 20 and sent > 100


def test_a_models_first_factor_comes_from_its_reply_not_from_the_template_padded_prompt():
    """A template may add tokens of its own (SmolLM2 adds a 21-token default system prompt);
    the prompt's count holds them, the reply's does not."""
    acc = Accounting(num_ctx=8192, model="m")
    acc.add(Message(id="m1", role="user", content="word " * 100))
    acc.on_request(
        ChatRequested(
            request_id="r1",
            model="m",
            messages=(ChatMessage(role="user", content="word " * 100),),
            options=RunnerOptions(num_ctx=8192),
        )
    )
    reply = "said " * 40
    counted = 100 + ROLE_OVERHEAD + PRIMING + 21  # exact content, plus the template's own 21
    acc.on_reply(
        ReplyCompleted(
            request_id="r1",
            content=reply,
            prompt_eval_count=counted,
            eval_count=41,
            done_reason="stop",  # 40 tokens of text and the end token
        )
    )
    assert acc.factor == 1.0, "the reply's 40 tokens for 40 estimated"
    assert acc.used() == counted, "the anchor keeps the template's tokens"
    acc.add(Message(id="m2", role="assistant", content=reply))
    acc.add(Message(id="m3", role="user", content="word " * 50))
    assert acc.used() == counted + 41 + ROLE_OVERHEAD + 50 + ROLE_OVERHEAD, "eval_count is exact"


def test_a_rendered_prompt_separates_the_templates_own_tokens_from_the_texts():
    """SmolLM2's template adds a default system prompt when there is none: the prompt's count
    holds it, the messages do not. Fitted on the rendered prompt, the factor is the text's and
    the default system prompt is the template's (`extra`), kept for every later prompt."""
    user = "word " * 60
    default = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    text = (
        f"<|im_start|>system\n{default}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    markers, raw = 5, estimate_text(text.replace("<|im_start|>", "").replace("<|im_end|>", ""))
    counted = markers + raw  # the text counts exactly as estimated: a factor of 1
    acc = Accounting(num_ctx=8192, model="m")
    acc.add(Message(id="m1", role="user", content=user))
    acc.on_request(
        ChatRequested(
            request_id="r1",
            model="m",
            messages=(ChatMessage(role="user", content=user),),
            options=RunnerOptions(num_ctx=8192),
        )
    )
    acc.on_rendered(PromptRendered(request_id="r1", text=text))
    acc.on_reply(ReplyCompleted(request_id="r1", content="ok", prompt_eval_count=counted))
    assert acc.factor == 1.0
    assert acc.extra["m"] == counted - (60 + ROLE_OVERHEAD + PRIMING)
    assert acc.used() == counted
    acc.remove(("m1",))  # the anchor goes; the template's part stays
    acc.add(Message(id="m3", role="user", content="word " * 30))
    assert acc.used() == 30 + ROLE_OVERHEAD + PRIMING + acc.extra["m"]


def _reference_estimate(text: str) -> int:
    """The rule as documented, written out by character class (ASCII text)."""
    import itertools

    def kind(c: str) -> str:
        if c.isalpha():
            return "letter"
        return "space" if c.isspace() else "other"

    count = 0
    for group, chars in itertools.groupby(text, kind):
        run = "".join(chars)
        if group == "letter":
            count += -(-len(run) // 6)
        elif group == "space":
            count += 0 if run == " " else 1
        else:
            count += len(run)  # each digit, mark or symbol
    return count


@given(st.text(alphabet=st.characters(min_codepoint=9, max_codepoint=126), max_size=200))
def test_the_ascii_fast_path_counts_by_the_documented_rule(text):
    assert estimate_text(text) == _reference_estimate(text)
