"""The snapshot manager: create, restore, list and delete snapshots, and keep the newest N.

A boundary actor (it does disk I/O, in a worker thread): it keeps its own copy of the
conversation, folded from the session's events with the same rules the session uses, so a
snapshot holds exactly the conversation at the moment it was requested. What it reports
(created, restored, failed, deleted) are inputs; replay re-publishes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from blake3 import blake3
from msgspec.structs import replace

from actors import Actor, Context

from ..config import SnapshotSettings
from ..conversation import Conversation
from ..events import (
    ChatRequested,
    ContextCleared,
    ContextReduced,
    ContextSizeChosen,
    DeleteRequested,
    MessageAdded,
    MessageUnanswered,
    ModelSelected,
    RestoreFailed,
    RestoreRequested,
    SessionOpened,
    SnapshotCreated,
    SnapshotFailed,
    SnapshotReason,
    SnapshotRequested,
    SnapshotRestored,
    SnapshotsDeleted,
    SystemPromptSet,
    UsageChanged,
    UserNotified,
)
from ..storage.atomic import StorageError
from ..storage.snapshot_file import SnapshotError, SnapshotMeta, SnapshotState
from ..storage.store import IdError, SnapshotStore
from ..tokens import message_tokens

DAY = 86400.0


@dataclass(frozen=True)
class RetentionPolicy:
    keep: int = SnapshotSettings().max_count
    max_age_days: float = SnapshotSettings().max_age_days

    @classmethod
    def from_settings(cls, snapshots: SnapshotSettings) -> RetentionPolicy:
        return cls(keep=snapshots.max_count, max_age_days=snapshots.max_age_days)


def to_prune(
    snapshots: Sequence[SnapshotMeta], policy: RetentionPolicy, just_made: str, now: float
) -> list[str]:
    """The snapshots the rolling cleanup deletes: all but the newest `keep`, and those older
    than `max_age_days` when set; never the one just made, nor one the user named (`/save
    NAME`) unless the one just made took its name over."""
    newest_first = sorted(snapshots, key=lambda m: (m.created_at, m.id), reverse=True)
    made = next((m for m in newest_first if m.id == just_made), None)
    renamed = [m.id for m in newest_first if made and made.name and m.name == made.name]
    others = [m for m in newest_first if m.id != just_made and not m.name]
    # The one just made counts towards the N kept, unless it is named (outside the count).
    keep = policy.keep if made and made.name else max(0, policy.keep - 1)
    doomed = [m.id for m in others[keep:]]
    if policy.max_age_days > 0:
        cutoff = now - policy.max_age_days * DAY
        doomed += [m.id for m in others[:keep] if m.created_at < cutoff]
    return doomed + [i for i in renamed if i != just_made]


Followed = (
    SessionOpened
    | ModelSelected
    | ContextSizeChosen
    | MessageAdded
    | MessageUnanswered
    | ContextReduced
    | ContextCleared
    | ChatRequested
    | SnapshotRestored
    | SystemPromptSet
    | UsageChanged
    | SnapshotRequested
    | RestoreRequested
    | DeleteRequested
)


class SnapshotManagerActor(Actor[Followed]):
    accepts = (
        SessionOpened,
        ModelSelected,
        ContextSizeChosen,
        MessageAdded,
        MessageUnanswered,
        ContextReduced,
        ContextCleared,
        ChatRequested,
        SnapshotRestored,
        SystemPromptSet,
        UsageChanged,
        SnapshotRequested,
        RestoreRequested,
        DeleteRequested,
    )

    def __init__(self, store: SnapshotStore, policy: RetentionPolicy, enabled: bool = True) -> None:
        self.store = store
        self.policy = policy
        self.enabled = enabled
        self.conversation = Conversation()
        self.session_id = ""
        self.model = ""
        self.num_ctx = 0
        self.used = 0

    async def handle(self, event: Followed, ctx: Context) -> None:
        match event:
            case SessionOpened(session_id=session_id):
                self.session_id = session_id
                self.conversation.apply(event)
            case ModelSelected(model=model):
                self.model = model
            case ContextSizeChosen(num_ctx=num_ctx):
                self.num_ctx = num_ctx
            case UsageChanged(used_tokens=used):
                self.used = used
            case SnapshotRequested(reason=reason, ref=ref, name=name):
                await self.create(ctx, reason, ref, name)
            case RestoreRequested(snapshot_id=wanted):
                await self.restore(ctx, wanted)
            case DeleteRequested(snapshot_id=wanted):
                await self.delete(ctx, wanted)
            case _:
                self.conversation.apply(event)

    async def create(
        self, ctx: Context, reason: SnapshotReason, ref: str = "", name: str = ""
    ) -> bool:
        """Save the conversation as it stands; whether it was saved."""
        if not self.enabled and reason != "manual":
            if reason in ("emergency", "pre-compression"):
                message = "snapshots are disabled (context.snapshots.enabled)"
                await ctx.publish(
                    SnapshotFailed(reason=reason, message=message, ref=ref, disabled=True)
                )
            return False
        state = self.conversation.state()
        messages = list(self.conversation.prompt_messages())
        meta = SnapshotMeta(
            id="",  # the shortest free prefix of `candidate`, found beside the files
            session_id=self.session_id,
            created_at=ctx.now(),
            model=self.model,
            num_ctx=self.num_ctx,
            tokens=self.used,
            messages=len(state.messages),
            compression_ratio=1.0,
            reason=reason,
            name=name,
        )
        candidate = blake3(ctx.ids.new_id().encode()).hexdigest()
        tokens = tuple(message_tokens(m) for m in state.messages)
        snapshot = SnapshotState(conversation=state, message_tokens=tokens)
        now = ctx.now()

        def write() -> tuple[SnapshotMeta, list[str]]:
            # Every look at the files happens here, in a worker thread, never on the loop.
            saved = self.store.save(replace(meta, id=self.store.short_id(candidate)), snapshot)
            return saved, self._prune(saved.id, now)

        try:
            saved, pruned = await anyio.to_thread.run_sync(write)
        except StorageError as exc:
            await ctx.publish(SnapshotFailed(reason=reason, message=str(exc), ref=ref))
            await ctx.publish(
                UserNotified(level="warning", text=f"the snapshot was not saved: {exc}")
            )
            return False
        await ctx.publish(
            SnapshotCreated(
                snapshot_id=saved.id,
                reason=reason,
                tokens=saved.tokens,
                messages=saved.messages,
                ref=ref,
                pruned=tuple(pruned),
                name=name,
            )
        )
        size = f"{saved.tokens} tokens, {len(messages)} messages"
        named = f" as {name!r}" if name else ""
        await ctx.publish(
            UserNotified(level="info", text=f"snapshot {saved.id} saved{named} ({reason}, {size})")
        )
        return True

    def _prune(self, just_made: str, now: float) -> list[str]:
        doomed = to_prune(self.store.listing().snapshots, self.policy, just_made, now)
        return self.store.delete(doomed)

    async def restore(self, ctx: Context, wanted: str) -> None:
        try:
            meta, state = await anyio.to_thread.run_sync(self.store.load, wanted)
        except (IdError, SnapshotError) as exc:
            await ctx.publish(RestoreFailed(snapshot_id=wanted, message=str(exc)))
            await ctx.publish(UserNotified(level="warning", text=f"nothing restored: {exc}"))
            return
        # As `/context clear` does: the conversation being replaced is saved first, so no
        # turn is left only in the log (with snapshots disabled, it is saved all the same).
        if self.conversation.messages and not await self._save_before(ctx):
            message = "the conversation now in use could not be saved first, so it was kept"
            await ctx.publish(RestoreFailed(snapshot_id=meta.id, message=message))
            await ctx.publish(UserNotified(level="warning", text=f"nothing restored: {message}"))
            return
        await ctx.publish(SnapshotRestored(snapshot_id=meta.id, state=state.conversation))
        await ctx.publish(
            UserNotified(
                level="info",
                text=f"restored snapshot {meta.id} ({meta.messages} messages, {meta.tokens} "
                "tokens); the next request carries exactly that conversation",
            )
        )

    async def _save_before(self, ctx: Context) -> bool:
        enabled, self.enabled = self.enabled, True
        try:
            return await self.create(ctx, "auto")
        finally:
            self.enabled = enabled

    async def delete(self, ctx: Context, wanted: str) -> None:
        try:
            snapshot_id = await anyio.to_thread.run_sync(self.store.resolve, wanted)
            gone = await anyio.to_thread.run_sync(self.store.delete, [snapshot_id])
        except IdError as exc:
            await ctx.publish(UserNotified(level="warning", text=f"nothing deleted: {exc}"))
            return
        await ctx.publish(SnapshotsDeleted(snapshot_ids=tuple(gone), reason="deleted by the user"))
        await ctx.publish(UserNotified(level="info", text=f"snapshot {snapshot_id} deleted"))
