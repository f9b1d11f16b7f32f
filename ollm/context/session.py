"""The session: owns the conversation and the send path.

Chain: UserSubmitted → MessageAdded → (token counter) UsageChanged → ChatRequested →
(provider) ReplyChunk… → ReplyCompleted → MessageAdded(assistant). A request goes out on
the usage that follows its message, so its `num_predict` fits the room that is left; never
while the model is being reloaded with a new size (it waits, and goes out after).

The session's state is one `Phase` (what the turn under way waits for) beside whether the
model is loaded at the size in force; work that arrives meanwhile (messages, `/context
clear`) waits in order, and none is lost. The decisions are pure functions, each with its
own home:

- what to do just before sending (send, take the oldest turns out first at the hard limit,
  or refuse a message that cannot fit): `memory_guard.before_send`, with the guard's own
  thresholds; `plan_send` below turns it into the request (`/test prompt` calls it too);
- what a failed reply leads to (an overflow retried once after dropping the oldest turns,
  out of memory once with a smaller context, else unanswered): `recovery.after_failure`;
- `/context clear` (the `Clearing` phase): a snapshot first, so that it can be undone; the
  conversation is cleared only once the snapshot is saved.

A failed request never loses the user's message: it stays, marked unanswered.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from actors import Actor, Context

from ..anchors import collect, merge
from ..compression import settle
from ..config import Settings
from ..conversation import Conversation, turns
from ..events import (
    ChatRequested,
    ClearFailed,
    ClearRequested,
    CompressionCompleted,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    ConversationState,
    FailureKind,
    Message,
    MessageAdded,
    MessageUnanswered,
    ModelLoaded,
    ModelLoadFailed,
    ModelOption,
    ModelSelected,
    NoticeLevel,
    ReplyCancelled,
    ReplyCompleted,
    ReplyFailed,
    ResizeDeclined,
    ResizeRequested,
    SessionOpened,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    SnapshotRestored,
    SystemPromptSet,
    UsageChanged,
    UserNotified,
    UserSubmitted,
    VocabularyLoaded,
    VocabularyUnavailable,
)
from ..model_options import model_options
from ..profiles import runner_options
from .memory_guard import DropFirst, GuardPolicy, Refuse, Send, before_send
from .recovery import GiveUp, RetryShorter, RetrySmaller, after_failure

LOADS_ON_SEND: tuple[FailureKind, ...] = (
    "server_error",
    "connection_reset",
    "timeout",
    "stream_error",
    "malformed_reply",
)
"""A warm-up that failed so may have met a passing fault: the chat request loads the model
itself, so a waiting message goes out once all the same (any other failure, such as a
missing model or no server, would only fail again)."""


@dataclass(frozen=True)
class SessionPolicy:
    max_reply_tokens: int = Settings().ollama.max_reply_tokens
    min_reply_tokens: int = 64
    think: bool = Settings().ollama.think
    sampling: tuple[ModelOption, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(
            max_reply_tokens=settings.ollama.max_reply_tokens,
            think=settings.ollama.think,
            sampling=model_options(settings.ollama.options),
        )


def reply_budget(policy: SessionPolicy, num_ctx: int, used: int) -> int:
    """`num_predict`: the configured maximum, bounded by the room left in the context."""
    return max(policy.min_reply_tokens, min(policy.max_reply_tokens, num_ctx - used))


def chat_request(
    conversation: Conversation,
    model: ModelSelected,
    num_ctx: int,
    used: int,
    policy: SessionPolicy,
    attempt: int = 1,
) -> ChatRequested:
    """The request for the conversation as it is."""
    return ChatRequested(
        request_id=conversation.new_request_id(),
        model=model.model,
        messages=conversation.chat_messages(),
        options=runner_options(num_ctx),
        num_predict=reply_budget(policy, num_ctx, used),
        think=policy.think if model.thinking else None,
        attempt=attempt,
        sampling=policy.sampling,
        prompt_tokens=used,
    )


def refusal(newest_tokens: int, num_ctx: int) -> str:
    """Why a message that cannot fit is refused, and what to do, in one sentence."""
    return (
        f"your message is about {newest_tokens} tokens, too large for the {num_ctx}-token "
        "context even with everything older set aside; shorten it, or choose a larger "
        "context (`/context size N` in the chat, `--context-size N` on the command line)"
    )


def plan_send(
    conversation: Conversation,
    model: ModelSelected,
    num_ctx: int,
    usage: UsageChanged,
    guard: GuardPolicy,
    policy: SessionPolicy,
    *,
    attempt: int = 1,
    reduced: bool = False,
) -> ChatRequested | DropFirst | Refuse:
    """The one send path: the request to send now, or what must happen instead."""
    decision = before_send(guard, conversation, usage, num_ctx, reduced=reduced)
    if isinstance(decision, Send):
        return chat_request(conversation, model, num_ctx, usage.used_tokens, policy, attempt)
    return decision


RESHAPING = (ContextReduced, ContextCleared, MessageUnanswered)
"""The session's own events whose effect depends on their order with another actor's change
to the conversation (a compression); a new message does not."""


# --- the session's state --------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """The turn under way: the user's message and how its request has fared."""

    user_message_id: str
    attempt: int = 1
    reduced: bool = False
    """The oldest turns were already taken out for this attempt (they go once)."""
    failure: FailureKind | None = None
    """The last failure of this turn's requests."""


@dataclass(frozen=True)
class Idle:
    """Nothing under way: the next piece of work can start."""


@dataclass(frozen=True)
class AwaitingUsage:
    """The session just changed the conversation; it sends on the usage that change causes."""

    change_seq: int
    turn: Turn


@dataclass(frozen=True)
class AwaitingModel:
    """The model is being reloaded with a new size; the turn's request goes out after."""

    turn: Turn
    cause: int
    """The envelope the deferred send descends from."""


@dataclass(frozen=True)
class Streaming:
    request_id: str
    turn: Turn


@dataclass(frozen=True)
class Clearing:
    """`/context clear` waits for the snapshot that would undo it."""

    ref: str


Phase = Idle | AwaitingUsage | AwaitingModel | Streaming | Clearing


@dataclass(frozen=True)
class Submit:
    text: str
    seq: int


@dataclass(frozen=True)
class Clear:
    seq: int
    number: int
    """The how-many-th clear of the session: its snapshot's ref (never a `seq`, which the
    record need not keep dense)."""


Work = Submit | Clear


Accepted = (
    SessionOpened
    | ModelSelected
    | ContextSizeChosen
    | ModelLoaded
    | ModelLoadFailed
    | ResizeDeclined
    | UserSubmitted
    | UsageChanged
    | ReplyCompleted
    | ReplyFailed
    | ReplyCancelled
    | SnapshotRestored
    | SystemPromptSet
    | CompressionCompleted
    | ClearRequested
    | SnapshotCreated
    | SnapshotFailed
    | VocabularyLoaded
    | VocabularyUnavailable
)


class SessionActor(Actor[Accepted]):
    accepts = (
        SessionOpened,
        ModelSelected,
        ContextSizeChosen,
        ModelLoaded,
        ModelLoadFailed,
        ResizeDeclined,
        UserSubmitted,
        UsageChanged,
        ReplyCompleted,
        ReplyFailed,
        ReplyCancelled,
        SnapshotRestored,
        SystemPromptSet,
        CompressionCompleted,
        ClearRequested,
        SnapshotCreated,
        SnapshotFailed,
        VocabularyLoaded,
        VocabularyUnavailable,
    )

    def __init__(
        self, policy: SessionPolicy | None = None, guard: GuardPolicy | None = None
    ) -> None:
        self.policy = policy or SessionPolicy()
        self.guard = guard or GuardPolicy()
        self._reset()

    def _reset(self) -> None:
        """The state of a fresh session; a (re)opened session starts here, as a new process
        would, which is what lets a resumed session's log replay through one runtime."""
        self.conversation = Conversation()
        self.model: ModelSelected | None = None
        self.num_ctx = 0
        self.usage = UsageChanged(used_tokens=0, limit_tokens=0)
        self.phase: Phase = Idle()
        self.loaded = False
        """The model is loaded with the size in force (nothing is sent until it is)."""
        self.counting = True
        """How the model's tokens are counted is settled: its vocabulary is loaded or known
        to be unavailable (nothing is sent before, so the first message is counted as every
        later one is)."""
        self.deferred: ModelLoaded | ModelLoadFailed | None = None
        """A load that came in before the counting was settled: acted on once it is."""
        self.queued: deque[Work] = deque()
        self.clears = 0
        self.base: ConversationState | None = None
        """The conversation before the first of the session's own reshaping events that the
        bus may still order after another actor's (see `_external`)."""
        self.since: list[tuple[int, object]] = []
        """The conversation's events after `base`, with their seqs."""

    async def handle(self, event: Accepted, ctx: Context) -> None:
        seq = ctx.current.seq if ctx.current is not None else 0
        if self.since and all(s < seq for s, _ in self.since):
            self.base, self.since = None, []  # every event of ours is now in the bus's order
        phase = self.phase
        match event:
            case SessionOpened():
                self._reset()
                self.conversation.apply(event)
            case ModelSelected():
                self.model = event
                self.counting, self.deferred = not event.vocabulary, None
            case VocabularyLoaded() | VocabularyUnavailable() if (
                self.model is not None and event.model == self.model.model and not self.counting
            ):
                self.counting = True
                if self.deferred is not None:
                    load, self.deferred = self.deferred, None
                    await self._loaded(ctx, load)
            case ContextSizeChosen(num_ctx=num_ctx):
                self.num_ctx, self.loaded = num_ctx, False
            case ModelLoaded() | ModelLoadFailed() if self.num_ctx and not self.loaded:
                await self._loaded(ctx, event)
            case ResizeDeclined(reason=reason) if isinstance(phase, AwaitingModel):
                await self._unanswered(ctx, phase.turn, reason, causation=phase.cause)
            case UserSubmitted(text=text):
                self.queued.append(Submit(text, seq))
                await self._next(ctx)
            case ClearRequested():
                self.clears += 1
                self.queued.append(Clear(seq, self.clears))
                await self._next(ctx)
            case UsageChanged():
                self.usage = event
                cause = ctx.current.causation if ctx.current is not None else None
                if isinstance(phase, AwaitingUsage) and cause == phase.change_seq:
                    await self._try_send(ctx, phase.turn)
            case ReplyCompleted() | ReplyFailed() | ReplyCancelled() if (
                isinstance(phase, Streaming) and phase.request_id == event.request_id
            ):
                await self._replied(ctx, phase.turn, event)
            case SnapshotRestored() | CompressionCompleted() | SystemPromptSet():
                self._external(seq, event)
            case SnapshotCreated(ref=ref) if isinstance(phase, Clearing) and ref == phase.ref:
                await self._cleared(ctx, event.snapshot_id)
            case SnapshotFailed(ref=ref) if isinstance(phase, Clearing) and ref == phase.ref:
                await self._clear_failed(ctx, event.message)
            case _:
                pass

    async def _emit(self, ctx: Context, event: object, causation: int | None = None) -> int:
        envelope = await ctx.publish(event, causation=causation)
        if self.base is None and isinstance(event, RESHAPING):
            self.base = self.conversation.state()
        if self.base is not None:
            self.since.append((envelope.seq, event))
        self.conversation.apply(event)
        return envelope.seq

    def _external(self, seq: int, event: object) -> None:
        """Fold another actor's change to the conversation in the bus's order, which every
        other actor (the token counter) and a replay follow: a compression published before
        the session's own reduction, but handled here after it, is applied before it."""
        if self.base is None:
            self.conversation.apply(event)
            return
        self.since.append((seq, event))
        conversation = Conversation.from_state(self.base)
        for _, folded in sorted(self.since, key=lambda pair: pair[0]):
            conversation.apply(folded)
        self.conversation = conversation

    async def _tell(
        self, ctx: Context, level: NoticeLevel, text: str, causation: int | None = None
    ) -> None:
        await ctx.publish(UserNotified(level=level, text=text), causation=causation)

    async def _next(self, ctx: Context) -> None:
        """Start the next piece of work, once nothing is under way and the model is loaded."""
        if not self.queued or not isinstance(self.phase, Idle) or not self.loaded:
            return
        work = self.queued.popleft()
        if isinstance(work, Submit):
            await self._submit(ctx, work)
        else:
            await self._clear(ctx, work)

    async def _loaded(self, ctx: Context, event: ModelLoaded | ModelLoadFailed) -> None:
        if self.model is None or event.model != self.model.model:
            return
        if not self.counting:
            self.deferred = event
            return
        self.loaded = True
        phase = self.phase
        retry = isinstance(event, ModelLoadFailed) and event.failure in LOADS_ON_SEND
        if not isinstance(phase, AwaitingModel):
            if retry:
                await self._tell(
                    ctx,
                    "info",
                    f"{event.model} did not load; the next message tries again (Ollama "
                    "loads the model for it)",
                )
            await self._next(ctx)
        elif isinstance(event, ModelLoadFailed) and not retry:
            await self._unanswered(ctx, phase.turn, event.message, causation=phase.cause)
        else:
            if retry:
                await self._tell(
                    ctx,
                    "info",
                    f"{event.model} did not load; retrying once: your message goes out now, "
                    "and Ollama loads the model for it",
                    causation=phase.cause,
                )
            await self._try_send(ctx, phase.turn, phase.cause)

    # --- the send path ----------------------------------------------------------------------

    async def _submit(self, ctx: Context, work: Submit) -> None:
        message = Message(id=self.conversation.new_message_id(), role="user", content=work.text)
        # Caused by the user's submission, even when it waited in the queue.
        seq = await self._emit(ctx, MessageAdded(message=message), causation=work.seq)
        self.phase = AwaitingUsage(seq, Turn(user_message_id=message.id))

    async def _try_send(self, ctx: Context, turn: Turn, causation: int | None = None) -> None:
        if not self.loaded:
            seq = ctx.current.seq if ctx.current is not None else 0
            self.phase = AwaitingModel(turn, causation if causation is not None else seq)
            return
        if self.model is None:
            self.phase = Idle()
            return
        planned = plan_send(
            self.conversation,
            self.model,
            self.num_ctx,
            self.usage,
            self.guard,
            self.policy,
            attempt=turn.attempt,
            reduced=turn.reduced,
        )
        match planned:
            case Refuse(newest_tokens=newest):
                await self._refuse(ctx, turn, newest, causation)
            case DropFirst(removed_ids=removed):
                text = (
                    f"the context reached the hard limit ({self.usage.used_tokens} of "
                    f"{self.num_ctx} tokens): "
                    f"the {len(removed)} oldest messages were taken out before sending"
                )
                reduced = replace(turn, reduced=True)
                await self._reduce_then_send(
                    ctx, removed, text, self.usage.used_tokens, reduced, causation
                )
            case ChatRequested():
                self.phase = Streaming(planned.request_id, turn)
                await self._emit(ctx, planned, causation)

    async def _replied(
        self, ctx: Context, turn: Turn, event: ReplyCompleted | ReplyFailed | ReplyCancelled
    ) -> None:
        match event:
            case ReplyCompleted():
                reply = Message(
                    id=self.conversation.new_message_id(),
                    role="assistant",
                    content=event.content,
                    tool_calls=event.tool_calls,
                )
                self.phase = Idle()
                await self._emit(ctx, MessageAdded(message=reply))
                await self._next(ctx)
            case ReplyFailed():
                await self._failed(ctx, turn, event)
            case ReplyCancelled():
                await self._unanswered(ctx, turn, "cancelled by the user", cancelled=True)

    async def _reduce_then_send(
        self,
        ctx: Context,
        removed: tuple[str, ...],
        text: str,
        before: int,
        turn: Turn,
        causation: int | None = None,
    ) -> None:
        """Take `removed` out of the context (a snapshot first, so it stays restorable), say
        so, and send the turn's request on the usage that follows."""
        await ctx.publish(SnapshotRequested(reason="auto"), causation=causation)
        gone = set(removed)
        dropped = [m for m in self.conversation.messages if m.id in gone]
        ledger = merge(self.conversation.ledger, collect(dropped))
        kept = settle(self.conversation.summary, ledger, self.num_ctx).pinned
        reduced = ContextReduced(
            removed_ids=removed, reason=text, tokens_before=before, ledger=ledger, pinned=kept
        )
        self.phase = AwaitingUsage(await self._emit(ctx, reduced, causation), turn)
        await self._tell(ctx, "warning", text, causation)

    async def _refuse(
        self, ctx: Context, turn: Turn, newest: int, causation: int | None = None
    ) -> None:
        """A message that can never fit is refused, kept in the log, and taken out of the
        context (it would otherwise go out with every later request)."""
        groups = turns(self.conversation.messages)
        ids = tuple(m.id for m in groups[-1]) if groups else ()
        text = refusal(newest, self.num_ctx)
        await self._emit(
            ctx,
            ContextReduced(removed_ids=ids, reason=text, tokens_before=self.usage.used_tokens),
            causation,
        )
        overflow = replace(turn, failure="context_overflow")  # `ollm -p` exits 5
        await self._unanswered(ctx, overflow, text, withdrawn=True, causation=causation)

    async def _failed(self, ctx: Context, turn: Turn, failure: ReplyFailed) -> None:
        turn = replace(turn, failure=failure.failure)
        recovery = after_failure(failure, turn.attempt, self.conversation.messages)
        retry = replace(turn, attempt=turn.attempt + 1, reduced=False)
        match recovery:
            case RetryShorter(removed_ids=removed, text=text):
                await self._reduce_then_send(ctx, removed, text, failure.n_prompt_tokens, retry)
            case RetrySmaller(text=text):
                seq = ctx.current.seq if ctx.current is not None else 0
                self.phase = AwaitingModel(retry, seq)
                await ctx.publish(ResizeRequested(reason="Ollama ran out of memory"))
                await self._tell(ctx, "warning", text)
            case GiveUp():
                await self._unanswered(ctx, turn, failure.message)

    async def _unanswered(
        self,
        ctx: Context,
        turn: Turn,
        reason: str,
        *,
        cancelled: bool = False,
        withdrawn: bool = False,
        causation: int | None = None,
    ) -> None:
        self.phase = Idle()
        unanswered = MessageUnanswered(
            message_id=turn.user_message_id,
            reason=reason,
            cancelled=cancelled,
            failure=turn.failure,
            withdrawn=withdrawn,
        )
        await self._emit(ctx, unanswered, causation)
        await self._next(ctx)

    # --- /context clear -------------------------------------------------------------------

    async def _clear(self, ctx: Context, work: Clear) -> None:
        """A snapshot first, so that the clear can be undone; once it is saved only the
        system prompt is left, and the next request holds it and the new message. If the
        snapshot fails nothing is cleared."""
        self.phase = Clearing(ref=f"clear-{work.number}")
        await ctx.publish(
            SnapshotRequested(reason="manual", ref=self.phase.ref), causation=work.seq
        )

    async def _cleared(self, ctx: Context, snapshot_id: str) -> None:
        self.phase = Idle()
        text = f"the conversation was cleared; `/context restore {snapshot_id}` brings it back"
        await self._emit(
            ctx, ContextCleared(reason=text, snapshot_id=snapshot_id, keep_summary=False)
        )
        await self._tell(ctx, "info", text)
        await self._next(ctx)

    async def _clear_failed(self, ctx: Context, message: str) -> None:
        self.phase = Idle()
        text = f"nothing was cleared: the snapshot that would undo it was not saved ({message})"
        await ctx.publish(ClearFailed(message=text))
        await self._tell(ctx, "warning", text)
        await self._next(ctx)
