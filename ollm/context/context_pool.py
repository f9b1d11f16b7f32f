"""The context pool: the `num_ctx` in force, chosen to fit the memory there is.

Policy: with auto-size on and memory known, the largest profile option no larger than the
user's pick whose weights + exact KV cache + compute buffers + buffer fit the headroom of the
device that fills first (a model without a profile gets the exact largest size that fits).
Otherwise the user's pick. Every change is one deliberate reload, done by the provider on
`ContextSizeChosen` and verified against `/api/ps`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from msgspec.structs import replace

from actors import Actor, Context

from ..events import (
    ChatRequested,
    ContextSizeChosen,
    KvTypeLearned,
    MemorySampled,
    ModelLoaded,
    ModelMemory,
    ModelSelected,
    ResizeDeclined,
    ResizeRequested,
    SessionOpened,
    SizeOption,
    UsageChanged,
    UsageTrend,
    UserNotified,
)
from ..gpu.records import headroom
from ..memory import (
    Footprint,
    allocation_types,
    footprint_of,
    format_bytes,
    largest_fitting,
    needed_bytes,
    reload_budget,
    usable_cache_type,
)
from ..server_setup import preference_notice
from .memory_guard import threshold_tokens


@dataclass
class PoolState:
    selected: ModelSelected | None = None
    chosen: ContextSizeChosen | None = None
    devices: dict[str, MemorySampled] = field(default_factory=dict)
    loaded: ModelLoaded | None = None
    allocations: dict[int, int] = field(default_factory=dict)
    """What `/api/ps` reported for the selected model after each load: context → size."""
    told: set[str] = field(default_factory=set)
    """Keys of the once-only notices given (in earlier sessions or this one)."""
    advised: bool = False
    """The selection's preference note was considered (after its first load)."""
    used: int = 0
    sent_at: deque[int] = field(default_factory=lambda: deque(maxlen=6))


def budget_bytes(state: PoolState) -> int | None:
    """Memory a (re)load of the model can use (`memory.reload_budget`), None while no device
    has been sampled."""
    if not state.devices or state.selected is None:
        return None
    held = 0
    if state.loaded is not None and state.loaded.model == state.selected.model:
        held = state.loaded.size_vram_bytes or state.loaded.size_bytes
    return reload_budget(headroom(state.devices.values()), held, state.selected.vram_buffer_bytes)


def footprint(state: PoolState) -> Footprint:
    selected, loaded = state.selected, state.loaded
    assert selected is not None
    if selected.architecture is None:
        return Footprint(weights_bytes=selected.weights_bytes)
    return footprint_of(
        selected.architecture,
        selected.weights_bytes,
        selected.kv_cache_type,
        loaded_context=loaded.context_length if loaded else 0,
        loaded_bytes=loaded.size_bytes if loaded else 0,
        parallel=selected.parallel,
    )


def choose(state: PoolState, *, below: int | None = None) -> tuple[SizeOption, str] | None:
    """The option to use and why; None when asked to go below and nothing smaller exists."""
    selected = state.selected
    assert selected is not None
    pick = SizeOption(size=selected.size, num_ctx=selected.num_ctx)
    options = [o for o in selected.options if o.size <= selected.size] or [pick]
    if below is not None:
        options = [o for o in options if o.num_ctx < below]
        if not options and below > 2048:
            options = [SizeOption(size=below // 2, num_ctx=below // 2)]
        if not options:
            return None
    budget = budget_bytes(state)
    arch = selected.architecture
    if not (selected.auto_size or below is not None) or budget is None or arch is None:
        choice = options[-1] if below is not None else pick
        return choice, "your choice" if below is None else "the next smaller size"
    fp = footprint(state)
    kv_type = usable_cache_type(arch, selected.kv_cache_type)
    fits = f"fits in {format_bytes(budget)} free"
    if below is not None:  # after a failure: a step down, not a contradiction
        fits = f"one size smaller, which by ollm's estimate {fits}"
    for option in reversed(options):
        if needed_bytes(arch, option.num_ctx, fp, kv_type, selected.parallel) <= budget:
            return option, fits
    if not selected.options:
        exact = largest_fitting(
            arch, budget, fp, kv_type, parallel=selected.parallel, high=options[-1].num_ctx
        )
        if exact:
            return SizeOption(size=exact, num_ctx=exact), fits
    free = format_bytes(max(budget, 0))
    return options[0], f"nothing fits in {free} free; the smallest size, layers likely on CPU"


def trend(state: PoolState, compress_at: float) -> UsageTrend | None:
    chosen = state.chosen
    if chosen is None or chosen.num_ctx <= 0:
        return None
    steps = [b - a for a, b in zip(state.sent_at, list(state.sent_at)[1:], strict=False) if b > a]
    per_turn = sum(steps) / len(steps) if steps else 0.0
    room = threshold_tokens(compress_at, chosen.num_ctx) - state.used
    turns_left = int(room // per_turn) if per_turn > 0 and room > 0 else (0 if room <= 0 else -1)
    return UsageTrend(
        percent=round(100 * state.used / chosen.num_ctx, 1),
        tokens_per_turn=round(per_turn, 1),
        turns_left=turns_left,
    )


Accepted = (
    SessionOpened
    | ModelSelected
    | ResizeRequested
    | MemorySampled
    | ModelLoaded
    | ModelMemory
    | UsageChanged
    | ChatRequested
)


class ContextPoolActor(Actor[Accepted]):
    accepts = (
        SessionOpened,
        ModelSelected,
        ResizeRequested,
        MemorySampled,
        ModelLoaded,
        ModelMemory,
        UsageChanged,
        ChatRequested,
    )

    def __init__(self, compress_at: float = 0.75) -> None:
        self.compress_at = compress_at
        self.state = PoolState()

    async def handle(self, event: Accepted, ctx: Context) -> None:
        state = self.state
        match event:
            case SessionOpened(told=told):
                # A (re)opened session starts fresh, as a new process.
                self.state = PoolState(told=set(told))
            case ModelSelected():
                state.selected, state.loaded, state.advised = event, None, False
                state.allocations.clear()
                await self._choose(ctx, None, "")
            case ResizeRequested(reason=reason, auto=True) if state.selected is not None:
                state.selected = replace(state.selected, auto_size=True)
                await self._choose(ctx, None, reason, tell=not event.by_user)
            case ResizeRequested(reason=reason) if state.selected is not None:
                if event.size:
                    state.selected = replace(state.selected, size=event.size, auto_size=False)
                    options = [o for o in state.selected.options if o.size <= event.size]
                    option = (
                        options[-1] if options else SizeOption(size=event.size, num_ctx=event.size)
                    )
                    await self._apply(ctx, option, reason, tell=not event.by_user)
                else:
                    current = state.chosen.num_ctx if state.chosen else state.selected.num_ctx
                    await self._choose(ctx, current, reason)
            case MemorySampled():
                state.devices[event.device] = event
            case ModelMemory():
                state.loaded = ModelLoaded(
                    model=event.model,
                    context_length=event.context_length,
                    size_bytes=event.size_bytes,
                    size_vram_bytes=event.size_vram_bytes,
                )
            case ModelLoaded():
                state.loaded = event
                await self._check_kv_type(ctx, event)
                await self._advise(ctx, event)
                chosen = state.chosen
                if (
                    chosen
                    and event.model == chosen.model
                    and 0 < event.context_length < chosen.num_ctx
                ):
                    await ctx.publish(
                        UserNotified(
                            level="warning",
                            text=f"Ollama gave {event.model} a context of "
                            f"{event.context_length} tokens, not the {chosen.num_ctx} asked "
                            "for (the model or the server caps it)",
                        )
                    )
            case UsageChanged(used_tokens=used):
                state.used = used
            case ChatRequested(purpose="chat"):
                state.sent_at.append(state.used)
                found = trend(state, self.compress_at)
                if found is not None:
                    await ctx.publish(found)
            case _:
                pass

    async def _check_kv_type(self, ctx: Context, loaded: ModelLoaded) -> None:
        """The allocations `/api/ps` reported, held against the exact KV cache of each type:
        when they rule out the type sizing assumed, the server runs a smaller one."""
        selected = self.state.selected
        if (
            selected is None
            or selected.architecture is None
            or loaded.model != selected.model
            or not (loaded.context_length and loaded.size_bytes and selected.weights_bytes)
        ):
            return
        allocations = self.state.allocations
        allocations[loaded.context_length] = loaded.size_bytes
        allowed = allocation_types(
            selected.architecture,
            tuple(allocations.items()),
            selected.weights_bytes,
            selected.parallel,
        )
        if not allowed or selected.kv_cache_type in allowed:
            return
        shown = ", ".join(
            f"{format_bytes(size)} at {context} tokens"
            for context, size in sorted(allocations.items())
        )
        learned = KvTypeLearned(
            model=selected.model,
            kv_cache_type=allowed[0],
            assumed=selected.kv_cache_type,
            source=f"the /api/ps allocation ({shown})",
        )
        self.state.selected = replace(
            selected, kv_cache_type=learned.kv_cache_type, kv_source=learned.source
        )
        await ctx.publish(learned)

    async def _advise(self, ctx: Context, loaded: ModelLoaded) -> None:
        """Once the first load has shown what the server runs: the note on `kvQuantization`
        when the server runs another type, unless it was given before."""
        state = self.state
        if state.advised or state.selected is None or loaded.model != state.selected.model:
            return
        state.advised = True
        notice = preference_notice(state.selected)
        if notice is not None and notice.once not in state.told:
            state.told.add(notice.once)
            await ctx.publish(notice)

    async def _choose(
        self, ctx: Context, below: int | None, reason: str, *, tell: bool = True
    ) -> None:
        found = choose(self.state, below=below)
        if found is None:
            await ctx.publish(
                ResizeDeclined(reason=f"{reason}; there is no smaller context to fall back to")
            )
            return
        option, why = found
        await self._apply(ctx, option, f"{reason}: {why}" if reason else why, tell=tell)

    async def _apply(
        self, ctx: Context, option: SizeOption, reason: str, *, tell: bool = True
    ) -> None:
        """Choose `option`; `tell`: say so (not when a command asked: it reports itself)."""
        selected = self.state.selected
        assert selected is not None
        chosen = ContextSizeChosen(
            model=selected.model, size=option.size, num_ctx=option.num_ctx, reason=reason
        )
        previous = self.state.chosen
        self.state.chosen = chosen
        await ctx.publish(chosen)
        changed = option.num_ctx != selected.num_ctx or (
            previous is not None and previous.num_ctx != option.num_ctx
        )
        if tell and changed:
            await ctx.publish(
                UserNotified(
                    level="info",
                    text=f"context for {selected.model}: num_ctx {option.num_ctx} "
                    f"(size {option.size}; you asked for {selected.size}) — {reason}",
                )
            )
