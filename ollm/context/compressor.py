"""The compressor: runs compressions in the background, safely, undoably.

`CompressRequested` → `CompressionStarted` → (pre-compression snapshot) → summary request to
the active model (same runner options as chat, `num_predict` bounded by the summary budget) →
`CompressionCompleted` or `CompressionFailed`. The session keeps chatting meanwhile; the
result replaces only the messages it covered. Priority: emergency > user > automatic; a
request while one runs joins it (an emergency turns a running summary into a truncation). A
failed, empty, inflated or cancelled summary changes nothing, and automatic compression then
truncates until the user asks again.

The user's turn goes first: a server often runs one request at a time (Ollama's default
`OLLAMA_NUM_PARALLEL=1`), so a chat request sent while a summary is generating cancels the
summary (the server drops it at once) and the compression runs again after that turn's
reply. A turn never waits behind a summary for more than the cancellation takes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from actors import Actor, Context

from ..anchors import merge
from ..compression import (
    Outcome,
    Plan,
    SummaryRejected,
    accept_summary,
    budgets,
    plan,
    request_lists,
    summary_messages,
    truncated,
)
from ..config import CompressionSettings, Strategy
from ..conversation import Conversation, render_context
from ..events import (
    CancelRequested,
    ChatRequested,
    CompressionCompleted,
    CompressionFailed,
    CompressionStarted,
    CompressReason,
    CompressRequested,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    ReplyCancelled,
    ReplyCompleted,
    ReplyFailed,
    SessionOpened,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotRequested,
    SnapshotRestored,
    SystemPromptSet,
    UsageChanged,
    UserNotified,
)
from ..profiles import runner_options
from ..tokens import estimate_text, message_tokens

PRIORITY: dict[CompressReason, int] = {"auto": 1, "user": 2, "emergency": 3}


def anchor_note(outcome: Outcome) -> str:
    """What the compression did with the ledger, for its notice (and the replay digest)."""
    note = f"; {len(outcome.pinned)} facts pinned"
    if outcome.repinned:
        note += f" ({len(outcome.repinned)} the summary lost)"
    if outcome.unpinned:
        shown = ", ".join(outcome.unpinned[:3]) + (", …" if len(outcome.unpinned) > 3 else "")
        note += f"; {len(outcome.unpinned)} no longer fit the pinned block: {shown}"
    return note


@dataclass
class Job:
    ref: str
    reason: CompressReason
    plan: Plan
    used_before: int
    context_before: str
    snapshot_id: str = ""
    request_id: str = ""


Followed = (
    SessionOpened
    | ChatRequested
    | ModelSelected
    | ContextSizeChosen
    | UsageChanged
    | MessageAdded
    | MessageUnanswered
    | ContextReduced
    | ContextCleared
    | CompressionCompleted
    | SnapshotRestored
    | SystemPromptSet
    | CompressRequested
    | SnapshotCreated
    | SnapshotFailed
    | ReplyCompleted
    | ReplyFailed
    | ReplyCancelled
)


class CompressorActor(Actor[Followed]):
    accepts = (
        SessionOpened,
        ChatRequested,
        ModelSelected,
        ContextSizeChosen,
        UsageChanged,
        MessageAdded,
        MessageUnanswered,
        ContextReduced,
        ContextCleared,
        CompressionCompleted,
        SnapshotRestored,
        SystemPromptSet,
        CompressRequested,
        SnapshotCreated,
        SnapshotFailed,
        ReplyCompleted,
        ReplyFailed,
        ReplyCancelled,
    )

    def __init__(self, policy: CompressionSettings | None = None) -> None:
        self.policy = policy or CompressionSettings()
        self._reset()

    def _reset(self) -> None:
        self.conversation = Conversation()
        self.model: ModelSelected | None = None
        self.num_ctx = 0
        self.used = 0
        self.job: Job | None = None
        self.truncate_only = False
        """After a failed summary, automatic compressions truncate until the user asks."""
        self.count = 0
        self.after_turn: tuple[str, CompressReason] | None = None
        """A compression put off for this chat request: it runs again after its reply."""

    async def handle(self, event: Followed, ctx: Context) -> None:
        job = self.job
        match event:
            case SessionOpened():
                self._reset()
                self.conversation.apply(event)
            case ModelSelected():
                self.model = event
            case ContextSizeChosen(num_ctx=num_ctx):
                self.num_ctx = num_ctx
            case UsageChanged(used_tokens=used):
                self.used = used
            case CompressRequested(reason=reason):
                await self._requested(ctx, reason)
            case ChatRequested(purpose="chat") if job and job.request_id:
                await self._defer(ctx, job, event.request_id)
            case SnapshotCreated(ref=ref) if job and ref == job.ref:
                job.snapshot_id = event.snapshot_id
                await self._after_snapshot(ctx, job)
            case SnapshotFailed(ref=ref) if job and ref == job.ref:
                if event.disabled:
                    await self._after_snapshot(ctx, job)
                else:
                    await self._fail(
                        ctx,
                        job,
                        f"the pre-compression snapshot failed: {event.message}",
                        sticky=False,
                    )
            case ReplyCompleted(request_id=rid) if job and rid == job.request_id:
                await self._summarized(ctx, job, event.content, event.done_reason)
            case ReplyCompleted() | ReplyFailed() | ReplyCancelled() if (
                self.after_turn and event.request_id == self.after_turn[0]
            ):
                reason = self.after_turn[1]
                self.after_turn = None
                await self._requested(ctx, reason)
            case ReplyFailed(request_id=rid) if job and rid == job.request_id:
                await self._fail(
                    ctx, job, f"the summary request failed: {event.message}", sticky=True
                )
            case ReplyCancelled(request_id=rid) if job and rid == job.request_id:
                await self._fail(ctx, job, "the compression was cancelled", sticky=False)
            case _:
                self.conversation.apply(event)

    def _strategy(self, reason: CompressReason) -> Strategy:
        if reason == "emergency" or (reason == "auto" and self.truncate_only):
            return "truncate"
        return self.policy.strategy

    async def _requested(self, ctx: Context, reason: CompressReason) -> None:
        if reason == "user":
            self.truncate_only = False
        job = self.job
        if job is not None:
            if PRIORITY[reason] > PRIORITY[job.reason]:
                job.reason = reason  # joined, with the higher priority
                if reason == "emergency" and job.plan.strategy != "truncate":
                    await self._truncate_now(ctx, job)
            return
        if not self.policy.enabled and reason == "auto":
            return
        strategy = self._strategy(reason)
        preserve, _ = budgets(
            self.num_ctx or 4096, self.policy.preserve_recent, self.policy.summary_max_tokens
        )
        found = plan(self.conversation.messages, strategy, preserve_tokens=preserve)
        self.count += 1
        ref = f"c{self.count}"
        if found is None or not found.covered:
            message = "there is nothing old enough to compress: only the newest turn is left"
            await ctx.publish(CompressionFailed(ref=ref, reason=reason, message=message))
            if reason != "auto":
                await ctx.publish(UserNotified(level="info", text=message))
            return
        context = self.conversation.context_message()
        self.job = job = Job(
            ref=ref,
            reason=reason,
            plan=found,
            used_before=self.used,
            context_before=context.content if context else "",
        )
        await ctx.publish(
            CompressionStarted(
                ref=ref,
                strategy=strategy,
                reason=reason,
                covered_ids=found.covered_ids,
                original_tokens=self.used,
            )
        )
        await ctx.publish(SnapshotRequested(reason="pre-compression", ref=ref))

    async def _after_snapshot(self, ctx: Context, job: Job) -> None:
        if job.plan.strategy == "truncate" or self.model is None:
            await self._truncate(ctx, job)
            return
        _, summary_budget = budgets(
            self.num_ctx, self.policy.preserve_recent, self.policy.summary_max_tokens
        )
        ledger = merge(self.conversation.ledger, job.plan.anchors)
        pinned, keep = request_lists(ledger, self.conversation.summary, self.num_ctx)
        request = ChatRequested(
            request_id=f"{job.ref}-summary",
            model=self.model.model,
            messages=summary_messages(
                job.plan.covered, self.conversation.summary, pinned, keep, summary_budget
            ),
            options=runner_options(self.num_ctx),
            purpose="summary",
            num_predict=summary_budget,
            think=False if self.model.thinking else None,
        )
        job.request_id = request.request_id
        await ctx.publish(request)

    async def _defer(self, ctx: Context, job: Job, turn_id: str) -> None:
        """A user's turn while the summary generates: cancel the summary, let the turn go,
        and compress again after its reply (the conversation is unchanged meanwhile)."""
        self.job = None  # whatever the summary request still sends is ignored
        self.after_turn = (turn_id, job.reason)
        await ctx.publish(CancelRequested(request_id=job.request_id))
        await ctx.publish(
            CompressionFailed(
                ref=job.ref,
                reason=job.reason,
                message="put off: your message goes first; it runs again after the reply",
            )
        )

    async def _truncate_now(self, ctx: Context, job: Job) -> None:
        """An emergency joined a running summary: truncate instead, now (or, while the
        pre-compression snapshot is still being saved, as soon as it is)."""
        job.plan = replace(job.plan, strategy="truncate")
        if job.request_id:
            await ctx.publish(CancelRequested(request_id=job.request_id))
            job.request_id = ""
            await self._truncate(ctx, job)

    async def _truncate(self, ctx: Context, job: Job) -> None:
        """Complete `job` without a summary: the old summary stays; the span's anchors join
        the ledger and the pinned block, exactly as a summary's would."""
        conversation = self.conversation
        outcome = truncated(job.plan, conversation.summary, conversation.ledger, self.num_ctx)
        await self._complete(ctx, job, outcome)

    async def _summarized(self, ctx: Context, job: Job, text: str, done_reason: str) -> None:
        try:
            outcome = accept_summary(
                text,
                job.plan,
                self.conversation.summary,
                self.conversation.ledger,
                self.num_ctx,
                done_reason=done_reason,
                previous_context=job.context_before,
            )
        except SummaryRejected as exc:
            await self._fail(ctx, job, f"the summary was discarded: {exc}", sticky=True)
            return
        await self._complete(ctx, job, outcome)

    async def _complete(self, ctx: Context, job: Job, outcome: Outcome) -> None:
        self.job = None
        summary, pinned = outcome.summary, outcome.pinned
        new_context = render_context(summary, pinned)
        # Estimates before calibration, scaled to the calibrated usage they add up to.
        estimated = sum(message_tokens(m) for m in self.conversation.prompt_messages())
        scale = job.used_before / estimated if estimated else 1.0
        after_estimate = (
            estimated
            - job.plan.covered_tokens
            - estimate_text(job.context_before)
            + estimate_text(new_context)
        )
        after = max(0, round(after_estimate * scale))
        ratio = round(after / job.used_before, 4) if job.used_before else 1.0
        done = CompressionCompleted(
            ref=job.ref,
            strategy=job.plan.strategy,
            covered_ids=job.plan.covered_ids,
            summary=summary,
            pinned=pinned,
            original_tokens=job.used_before,
            compressed_tokens=after,
            ratio=ratio,
            snapshot_id=job.snapshot_id,
            ledger=outcome.ledger,
            repinned=outcome.repinned,
            unpinned=outcome.unpinned,
        )
        self.conversation.apply(done)
        await ctx.publish(done)
        undo = f"; `/context restore {job.snapshot_id}` undoes it" if job.snapshot_id else ""
        await ctx.publish(
            UserNotified(
                level="info",
                text=f"compressed {job.used_before} → about {after} tokens "
                f"({job.plan.strategy}, {len(job.plan.covered)} messages)"
                f"{anchor_note(outcome)}{undo}",
            )
        )

    async def _fail(self, ctx: Context, job: Job, message: str, *, sticky: bool) -> None:
        self.job = None
        if sticky:
            self.truncate_only = True
            message += (
                "; the conversation is unchanged, and automatic compression will truncate "
                "until you ask for /context compress"
            )
        else:
            message += "; the conversation is unchanged"
        await ctx.publish(CompressionFailed(ref=job.ref, reason=job.reason, message=message))
        await ctx.publish(UserNotified(level="warning", text=message))
