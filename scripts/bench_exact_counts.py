"""Exact counting: a whole conversation from scratch and one new message, beside chars/4.

Usage: python scripts/bench_exact_counts.py [--repeats R] [--smoke]

Conversations of 10k, 30k and 100k tokens (by chars/4) of the standard library's sources,
counted three ways in the same run: chars/4 (`len // 4`, the cheapest estimate there is),
ollm's fallback estimate (`tokens.estimate_text`), and exactly, by SmolLM2's own vocabulary
built with Hugging Face `tokenizers` (from the model's GGUF when the test tier has fetched
it, else a byte-level vocabulary: then the figures are labelled so). "From scratch" is the
token counter recounting every message with a cold cache (a resumed session, `/model`);
"one message" is what a turn costs it: counting the new message and the total, cache warm.
Target: one message stays flat from 10k to 100k tokens.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from _bench import best, chat, corpus, parser, sizes

sys.path.insert(0, str(Path(__file__).parents[1]))

from ollm import vocabulary
from ollm.events import Message
from ollm.template_costs import measure, probes
from ollm.tokens import Accounting, Exact, estimate_text


def smollm2_vocabulary() -> tuple[str, Any]:
    """SmolLM2's tokenizer when its GGUF is cached on this machine, else a byte vocabulary."""
    try:
        from tests.engine.smollm2 import CACHE, MEMBER
        from tests.engine.tiny_gguf import model_info

        gguf = CACHE / Path(MEMBER).name
        if gguf.exists():
            return "SmolLM2 (49,152 tokens)", vocabulary.build_tokenizer(
                model_info(gguf, verbose=True)
            )
    except ImportError:
        pass
    from tests.fakes.vocabulary import byte_vocabulary

    return "a byte-level vocabulary (SmolLM2's GGUF is not cached here)", (
        vocabulary.build_tokenizer(byte_vocabulary())
    )


def exact_counter(tokenizer: Any) -> Exact:
    from tests.fakes.vocabulary import render_chatml

    rendered = [
        (p, render_chatml([{"role": m.role, "content": m.content} for m in p])) for p in probes()
    ]
    costs = measure(
        rendered, lambda text: vocabulary.count(tokenizer, text), vocabulary.prompt_start(tokenizer)
    )
    return Exact(vocabulary.Vocabulary(tokenizer), costs)


def accounting(tokenizer: Any | None) -> Accounting:
    acc = Accounting(num_ctx=1 << 20, model="m")
    if tokenizer is not None:
        acc.exact["m"] = exact_counter(tokenizer)
    return acc


def from_scratch(messages: tuple[Message, ...], tokenizer: Any | None) -> int:
    acc = accounting(tokenizer)  # a cold cache: every message is counted
    acc.reset(messages)
    return acc.used()


def chars4(messages: tuple[Message, ...]) -> int:
    return sum(len(m.content) // 4 for m in messages)


def one_message(acc: Accounting, new: Message) -> int:
    acc.add(new)
    used = acc.used()
    acc.remove((new.id,))
    return used


def per_new_message(messages: tuple[Message, ...], new: Message, tokenizer: Any | None) -> float:
    """A turn's cost to the counter: a message it has not seen (so counted, not a cache hit)
    added to the conversation, and the total; the best of 50."""
    acc = accounting(tokenizer)
    acc.reset(messages)
    fresh = iter(Message(id=f"n{i}", role="user", content=f"{i} {new.content}") for i in range(50))
    return best(lambda: one_message(acc, next(fresh)), 50)


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--repeats", type=int, default=5)
    args = options.parse_args()
    repeats = 1 if args.smoke else args.repeats
    name, tokenizer = smollm2_vocabulary()
    text = corpus()
    cases = sizes(args.smoke, (10_000, 30_000, 100_000), (500, 1_000, 2_000))
    print(f"exact: {name}; best of {repeats}")
    print(
        f"{'conversation':<14}{'exact count':>12}{'scratch exact':>15}{'estimate':>10}"
        f"{'chars/4':>10}{'1 msg exact':>13}{'estimate':>10}{'chars/4':>10}"
    )
    turn: dict[int, float] = {}
    for tokens in cases:
        messages = chat(text, tokens)
        new = Message(id="new", role="user", content=text[5000:6200])
        exact_total = from_scratch(messages, tokenizer)
        scratch = best(partial(from_scratch, messages, tokenizer), repeats)
        scratch_est = best(partial(from_scratch, messages, None), repeats)
        scratch_c4 = best(partial(chars4, messages), repeats)
        exact_one = per_new_message(messages, new, tokenizer)
        est_one = per_new_message(messages, new, None)
        c4_one = best(partial(chars4, (new,)), 50)
        turn[tokens] = exact_one
        print(
            f"{tokens:>8,} tok  {exact_total:>12,}{scratch * 1e3:>12.1f} ms"
            f"{scratch_est * 1e3:>7.1f} ms{scratch_c4 * 1e3:>7.2f} ms"
            f"{exact_one * 1e6:>10.0f} us{est_one * 1e6:>7.0f} us{c4_one * 1e6:>7.2f} us"
        )
    flat = turn[cases[-1]] / turn[cases[0]]
    print(f"one new message, {cases[-1]:,} vs {cases[0]:,} tokens: {flat:.2f}x (target: flat)")
    print(f"estimate_text on the corpus's first 100 KB: {estimate_text(text[:100_000]):,} units")


if __name__ == "__main__":
    main()
