"""Every domain event: frozen, keyword-only msgspec Structs with an explicit dotted tag.

Facts are past tense (`UsageChanged`); requests are imperative (`CompressRequested`).
Inputs (subclasses of `actors.Input`) carry the outside world in; replay re-publishes them
and checks that everything else is derived again. Rules for change: new fields get
defaults; a tag is never reused. `docs/events.md` is generated from `AnyEvent`
(`python scripts/gen_event_catalog.py`).
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from actors import Event, Input, RuntimeEvent

from .memory import Architecture

Role = Literal["system", "user", "assistant", "tool"]
CompressReason = Literal["auto", "user", "emergency"]
SnapshotReason = Literal["manual", "auto", "pre-compression", "emergency"]
Purpose = Literal["chat", "summary"]
NoticeLevel = Literal["info", "warning", "error"]
FailureKind = Literal[
    "server_unreachable",
    "model_not_found",
    "context_overflow",
    "out_of_memory",
    "stream_error",
    "malformed_reply",
    "timeout",
    "connection_reset",
    "server_error",
]


class ToolCall(Struct, frozen=True, kw_only=True):
    """A function call the model asked for (Ollama's `tool_calls[].function`)."""

    name: str
    arguments: str
    """The arguments as compact JSON text."""
    id: str = ""


class Message(Struct, frozen=True, kw_only=True):
    """One message of the conversation."""

    id: str
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str = ""
    """For a `tool` message: the tool whose result this is."""
    unanswered: bool = False
    """A user message whose request failed or was cancelled; it stays in the conversation."""


class ChatMessage(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A message as sent to Ollama's `/api/chat`."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str = ""


class ToolSchema(Struct, frozen=True, kw_only=True):
    """A tool offered to the model; Ollama renders its JSON schema into the prompt."""

    name: str
    description: str = ""
    parameters: str = "{}"
    """The JSON schema of the parameters, as compact JSON text."""


class RunnerOptions(Struct, frozen=True, kw_only=True):
    """The load-time options: any change makes Ollama reload the model, so every request to a
    model carries the same ones (built in one place, `ollm.profiles.runner_options`)."""

    num_ctx: int


class ModelOption(Struct, frozen=True, kw_only=True):
    """One per-request model option (`-o KEY VALUE`), sent in `options` beside the runner
    options (`ollm.model_options` says which may be set)."""

    name: str
    value: int | float | str | tuple[str, ...]


class SizeOption(Struct, frozen=True, kw_only=True):
    """A context option of a model's profile: what the user picks and what is sent."""

    size: int
    num_ctx: int


class DeviceReading(Struct, frozen=True, kw_only=True):
    """One memory device as a probe read it."""

    device: str
    total_bytes: int
    free_bytes: int
    unified: bool = False
    exact: bool = True


class Anchor(Struct, frozen=True, kw_only=True):
    """Text a compression must keep verbatim, and how much it matters (`ollm.anchors`:
    0 the user's instruction, 1 a fact the user stated, 2 pasted material, 3 a reply)."""

    text: str
    rank: int = 1


class ConversationState(Struct, frozen=True, kw_only=True):
    """A conversation as a value: what a snapshot or a resumed session restores."""

    system_prompt: str = ""
    summary: str = ""
    pinned: tuple[str, ...] = ()
    ledger: tuple[Anchor, ...] = ()
    """Every anchor a compression had to keep; `pinned` is the part the summary lacks."""
    messages: tuple[Message, ...] = ()
    next_message: int = 1
    next_request: int = 1


# --- inputs -------------------------------------------------------------------------------


class UserSubmitted(Input, frozen=True, kw_only=True, tag="user.submitted"):
    """The user sent a chat message."""

    text: str


class ClearRequested(Input, frozen=True, kw_only=True, tag="user.clear_requested"):
    """The user asks to clear the conversation (`/context clear`)."""


class SystemPromptSet(Input, frozen=True, kw_only=True, tag="user.system_prompt_set"):
    """The user sets the system prompt mid-session (`/set system …`, as in `ollama run`):
    every request from the next one starts with it; empty removes it."""

    text: str


class ServerInfo(Input, frozen=True, kw_only=True, tag="server.info"):
    """What the Ollama server said about itself."""

    version: str


class CancelRequested(Input, frozen=True, kw_only=True, tag="user.cancel_requested"):
    """The user asked to stop the reply being generated (Ctrl-C)."""

    request_id: str = ""
    """Empty: whatever is generating now."""


class ModelSelected(Input, frozen=True, kw_only=True, tag="model.selected"):
    """The model and context size in force, decided from config, profile and the server."""

    model: str
    size: int
    """The size the user picked (or the profile option chosen for it)."""
    num_ctx: int
    """What is sent to Ollama as `num_ctx`: the denominator of every threshold."""
    model_max: int = 0
    """The model's own maximum context (0 = unknown)."""
    thinking: bool = False
    """The model has the `thinking` capability."""
    how: str = ""
    """How `num_ctx` was decided, in words (shown to the user)."""
    warning: str = ""
    """A warning the user must see (e.g. the 0.85 fallback), else empty."""
    options: tuple[SizeOption, ...] = ()
    """The model's context options (size → num_ctx), smallest first; empty without a profile."""
    architecture: Architecture | None = None
    """From `/api/show` `model_info`: what the exact KV arithmetic needs."""
    weights_bytes: int = 0
    """The model's size on disk (`/api/tags`), i.e. its weights."""
    auto_size: bool = False
    """Size the context from free memory (`context.autoSize`)."""
    kv_cache_type: str = "f16"
    """The KV cache type the server runs (what sizing uses)."""
    kv_source: str = ""
    """Where `kv_cache_type`, `flash_attention` and `parallel` were read, in words."""
    flash_attention: str = "auto"
    """The server's flash attention: "on", "off" or "auto" (llama-server decides)."""
    kv_preferred: str = ""
    """The type the user wants the server to run (`kvQuantization`); "" when not known."""
    vram_buffer_bytes: int = 0
    parallel: int = 1
    """The server's parallel slots (`OLLAMA_NUM_PARALLEL`): each holds a whole context."""
    digest: str = ""
    """The model's digest (`/api/tags`): the key its tokenizer is cached under."""
    vocabulary: bool = False
    """A vocabulary loader answers for this model (`VocabularyLoaded` or
    `VocabularyUnavailable` follows); the session sends nothing before it does."""


class SessionOpened(Input, frozen=True, kw_only=True, tag="session.opened"):
    """A session began: new (an empty conversation with the system prompt) or resumed."""

    session_id: str
    state: ConversationState
    resumed: bool = False
    told: tuple[str, ...] = ()
    """The keys of once-only notices (`UserNotified.once`) earlier sessions gave."""


class ModelLoaded(Input, frozen=True, kw_only=True, tag="model.loaded"):
    """Ollama reports the model loaded (`/api/ps`), after ollm's deliberate (re)load."""

    model: str
    context_length: int
    """`/api/ps` `context_length`: the context the server really gave (0 = not reported)."""
    size_bytes: int = 0
    size_vram_bytes: int = 0


class VocabularyLoaded(Input, frozen=True, kw_only=True, tag="model.vocabulary_loaded"):
    """The model's own tokenizer is built (from `/api/show` verbose, or the user cache): from
    here on its messages are counted exactly. Replay loads it from the cache by `digest`."""

    model: str
    digest: str
    tokens: int
    """The vocabulary's size."""
    cached: bool = False
    """It was read from the cache (else fetched from the server and built)."""


class VocabularyUnavailable(Input, frozen=True, kw_only=True, tag="model.vocabulary_unavailable"):
    """The model's tokenizer cannot be had (an unsupported vocabulary, or the server would not
    say): counting stays with the calibrated estimate."""

    model: str
    reason: str


class TemplateRendered(Input, frozen=True, kw_only=True, tag="model.template_rendered"):
    """The model's template rendering a probe conversation (`_debug_render_only`, after each
    load): with the model's tokenizer it gives the template's own tokens exactly, per role and
    around the conversation, before the first request."""

    model: str
    messages: tuple[ChatMessage, ...]
    """The probe: placeholder contents, found again in `text` to cut it into its parts."""
    text: str


class ModelMemory(Input, frozen=True, kw_only=True, tag="model.memory"):
    """What a loaded model holds now, as `/api/ps` reports it (polled by the VRAM monitor)."""

    model: str
    context_length: int
    size_bytes: int
    size_vram_bytes: int


class ModelLoadFailed(Input, frozen=True, kw_only=True, tag="model.load_failed"):
    """Loading the selected model failed; `message` is one sentence for the user."""

    model: str
    failure: FailureKind
    message: str


class ReplyChunk(Input, frozen=True, kw_only=True, tag="reply.chunk"):
    """A piece of the reply as it streams."""

    request_id: str
    content: str = ""
    thinking: str = ""


class ReplyCompleted(Input, frozen=True, kw_only=True, tag="reply.completed"):
    """The reply ended; Ollama's own token counts."""

    request_id: str
    content: str
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_eval_count: int = 0
    """Prompt tokens the server used (after any truncation); 0 = not reported."""
    eval_count: int = 0
    done_reason: str = ""


class ReplyFailed(Input, frozen=True, kw_only=True, tag="reply.failed"):
    """The request failed; `message` is one sentence for the user."""

    request_id: str
    failure: FailureKind
    message: str
    n_prompt_tokens: int = 0
    """For an overflow: the prompt size the server counted, when it said."""
    n_ctx: int = 0
    partial: str = ""
    """What had streamed before the failure."""


class PromptRendered(Input, frozen=True, kw_only=True, tag="prompt.rendered"):
    """The prompt of a request as the model's template renders it (Ollama's
    `_debug_render_only`), asked once per model: it shows what the template adds on its
    own (a default system prompt, role markers), which calibration must not spread over
    the messages' text."""

    request_id: str
    text: str


class ReplyCancelled(Input, frozen=True, kw_only=True, tag="reply.cancelled"):
    """The reply was stopped on the user's request."""

    request_id: str
    partial: str = ""


class SnapshotCreated(Input, frozen=True, kw_only=True, tag="snapshot.created"):
    """A snapshot of the conversation was saved (written, synced, indexed)."""

    snapshot_id: str
    reason: SnapshotReason
    tokens: int = 0
    messages: int = 0
    ref: str = ""
    pruned: tuple[str, ...] = ()
    """Older snapshots deleted by the rolling cleanup (or replaced: the same name)."""
    name: str = ""


class SnapshotFailed(Input, frozen=True, kw_only=True, tag="snapshot.failed"):
    """A snapshot could not be saved; earlier ones are intact."""

    reason: SnapshotReason
    message: str
    ref: str = ""
    disabled: bool = False
    """Snapshots are turned off in the settings (not a failure of the disk)."""


class RestoreRequested(Input, frozen=True, kw_only=True, tag="snapshot.restore_requested"):
    """The user asks to restore a snapshot (an id or an unambiguous prefix)."""

    snapshot_id: str


class SnapshotRestored(Input, frozen=True, kw_only=True, tag="snapshot.restored"):
    """A snapshot was read, verified and handed back: the conversation becomes `state`."""

    snapshot_id: str
    state: ConversationState


class RestoreFailed(Input, frozen=True, kw_only=True, tag="snapshot.restore_failed"):
    """A restore was refused or failed; nothing changed."""

    snapshot_id: str
    message: str


class DeleteRequested(Input, frozen=True, kw_only=True, tag="snapshot.delete_requested"):
    """The user asks to delete a snapshot."""

    snapshot_id: str


class SnapshotsDeleted(Input, frozen=True, kw_only=True, tag="snapshot.deleted"):
    snapshot_ids: tuple[str, ...]
    reason: str


class MemorySourceChanged(Input, frozen=True, kw_only=True, tag="memory.source_changed"):
    """Where memory figures now come from (a probe failed, or the server is remote)."""

    source: str
    detail: str


class MemorySampled(Input, frozen=True, kw_only=True, tag="memory.sampled"):
    """A reading of one memory device (a GPU, or the host when there is none)."""

    device: str
    """e.g. `nvidia:0`, `host`."""
    total_bytes: int
    free_bytes: int
    source: str = ""
    """What produced the figure, e.g. `nvml`, `nvidia-smi`, `psutil`."""


# --- conversation and usage -----------------------------------------------------------------


class MessageAdded(Event, frozen=True, kw_only=True, tag="message.added"):
    """A message joined the conversation."""

    message: Message


class MessageUnanswered(Event, frozen=True, kw_only=True, tag="message.unanswered"):
    """A user message's request failed or was cancelled; the message stays, marked."""

    message_id: str
    reason: str
    """One sentence for the user."""
    cancelled: bool = False
    """The user stopped the reply (Ctrl-C)."""
    failure: FailureKind | None = None
    """The failure of the request that left it unanswered, when one failed."""
    withdrawn: bool = False
    """Refused as too large for any request: taken out of the context (the log keeps it)."""


class ChatRequested(Event, frozen=True, kw_only=True, tag="chat.requested"):
    """The session asks the provider for a reply: exactly what goes on the wire."""

    request_id: str
    model: str
    messages: tuple[ChatMessage, ...]
    options: RunnerOptions
    purpose: Purpose = "chat"
    num_predict: int = -1
    think: bool | None = None
    """None: not sent (the model cannot think)."""
    tools: tuple[ToolSchema, ...] = ()
    attempt: int = 1
    sampling: tuple[ModelOption, ...] = ()
    """The user's model options (chat requests only; summaries use the model's defaults)."""
    prompt_tokens: int = 0
    """The prompt's size as ollm counted it before sending (chat requests; 0 = not counted)."""


class ContextReduced(Event, frozen=True, kw_only=True, tag="context.reduced"):
    """Messages were taken out of the active context to make it fit."""

    removed_ids: tuple[str, ...]
    reason: str
    tokens_before: int = 0
    tokens_after: int = 0
    ledger: tuple[Anchor, ...] | None = None
    """With the removed messages' anchors added (None: unchanged)."""
    pinned: tuple[str, ...] | None = None


class UsageChanged(Event, frozen=True, kw_only=True, tag="usage.changed"):
    """The conversation's size in tokens, against the context sent to Ollama (`num_ctx`)."""

    used_tokens: int
    limit_tokens: int
    newest_tokens: int = 0
    """Of `used_tokens`, the newest turn's (from the last user message on)."""
    base_tokens: int = 0
    """Of `used_tokens`, what every request carries: the system prompt, the pinned facts and
    summary, and the template's own tokens."""


class CalibrationChanged(Event, frozen=True, kw_only=True, tag="usage.calibrated"):
    """A model's token calibration after a reply: tokens per estimated token, and what its
    template adds on its own. The journal keeps the latest per model for the next session."""

    model: str
    factor: float
    extra: int = 0


class CalibrationRestored(Input, frozen=True, kw_only=True, tag="usage.calibration_restored"):
    """The calibration a previous session learned for the model: the first estimates of
    this one start from it (until this session's own first reply)."""

    model: str
    factor: float
    extra: int = 0


class KvTypeLearned(Event, frozen=True, kw_only=True, tag="context.kv_type_learned"):
    """What `/api/ps` allocated for the model rules out the KV cache type sizing assumed:
    the server runs `kv_cache_type` (the largest type the allocation still allows), and
    sizing follows it from now on."""

    model: str
    kv_cache_type: str
    assumed: str
    """The type sizing used until now."""
    source: str
    """How the allocation showed it, in words (what `/api/ps` reported, at which context)."""


class TruncationDetected(Event, frozen=True, kw_only=True, tag="usage.truncation_detected"):
    """Ollama counted far fewer prompt tokens than were sent: it cut the conversation."""

    request_id: str
    sent_tokens: int
    counted_tokens: int


class ContextSizeChosen(Event, frozen=True, kw_only=True, tag="context.size_chosen"):
    """The context pool decided the `num_ctx` in force; the provider reloads the model with it."""

    model: str
    size: int
    num_ctx: int
    reason: str


class ResizeRequested(Event, frozen=True, kw_only=True, tag="context.resize_requested"):
    """Someone asks the context pool for a different size."""

    reason: str
    smaller: bool = True
    """Step down to the next option that fits (out of memory, low memory)."""
    size: int = 0
    """A specific size instead (0 = none); it also turns auto-size off."""
    auto: bool = False
    """Turn auto-size on and size from free memory again (`/context auto`)."""
    by_user: bool = False
    """A command asked, and reports the outcome itself: the pool adds no notice."""


class ResizeDeclined(Event, frozen=True, kw_only=True, tag="context.resize_declined"):
    """The context pool cannot honour a resize request."""

    reason: str


class UsageTrend(Event, frozen=True, kw_only=True, tag="usage.trend"):
    """How fast the conversation grows: tokens per turn and turns left before compression."""

    percent: float
    tokens_per_turn: float
    turns_left: int
    """Turns before the compression threshold at this pace (-1: unknown)."""


class ContextCleared(Event, frozen=True, kw_only=True, tag="context.cleared"):
    """The conversation was cleared to the system prompt (and the summary, if kept)."""

    reason: str
    snapshot_id: str = ""
    keep_summary: bool = True
    """False: the summary and pinned facts go too (`/context clear`)."""


class ClearFailed(Event, frozen=True, kw_only=True, tag="context.clear_failed"):
    """`/context clear` changed nothing: the snapshot that would undo it was not saved."""

    message: str


class UserNotified(Event, frozen=True, kw_only=True, tag="user.notified"):
    """An intervention the user must hear about, in one plain sentence."""

    level: NoticeLevel
    text: str
    once: str = ""
    """A key: the journal remembers it, and a notice with the same key is not given again
    (advice that does not change from session to session); "" for every other notice."""


# --- thresholds and requests ----------------------------------------------------------------


class _LimitReached(Event, frozen=True, kw_only=True):
    """Usage reached `threshold`, a fraction of `limit_tokens` (the `num_ctx` sent)."""

    used_tokens: int
    limit_tokens: int
    threshold: float


class SoftLimitHit(_LimitReached, frozen=True, kw_only=True, tag="limit.soft_hit"):
    """Usage reached the compression threshold."""


class CompressRequested(Event, frozen=True, kw_only=True, tag="compress.requested"):
    """Someone asks for the conversation to be compressed."""

    reason: CompressReason


class CompressionStarted(Event, frozen=True, kw_only=True, tag="compress.started"):
    """A compression began; it covers `covered_ids` (the oldest whole turns)."""

    ref: str
    strategy: str
    reason: CompressReason
    covered_ids: tuple[str, ...]
    original_tokens: int


class CompressionCompleted(Event, frozen=True, kw_only=True, tag="compress.completed"):
    """The covered messages are replaced by the rolling summary and the pinned facts."""

    ref: str
    strategy: str
    covered_ids: tuple[str, ...]
    summary: str
    pinned: tuple[str, ...]
    original_tokens: int
    compressed_tokens: int
    ratio: float
    snapshot_id: str = ""
    """The pre-compression snapshot: restoring it undoes this compression."""
    ledger: tuple[Anchor, ...] = ()
    repinned: tuple[str, ...] = ()
    """Ledger anchors the new summary lost, pinned verbatim."""
    unpinned: tuple[str, ...] = ()
    """Ledger anchors neither the summary nor the (full) pinned block carries."""


class CompressionFailed(Event, frozen=True, kw_only=True, tag="compress.failed"):
    """Nothing was changed; `message` says why in one sentence."""

    ref: str
    reason: str
    message: str


class SnapshotRequested(Event, frozen=True, kw_only=True, tag="snapshot.requested"):
    """Someone asks for a snapshot of the conversation as it is now."""

    reason: SnapshotReason
    ref: str = ""
    """Echoed in `SnapshotCreated`, so the asker knows its snapshot exists."""
    name: str = ""
    """The user's name for it (`/save NAME`): kept out of the rolling cleanup, and
    replacing the session's earlier snapshot of that name."""


class HardLimitHit(_LimitReached, frozen=True, kw_only=True, tag="limit.hard_hit"):
    """Usage reached the hard limit: the context must be reduced before the next request."""


class CriticalLimitHit(_LimitReached, frozen=True, kw_only=True, tag="limit.critical_hit"):
    """Usage reached the critical limit: emergency snapshot, then clear."""


class LowMemory(Event, frozen=True, kw_only=True, tag="memory.low"):
    """A device's free memory fell below the low-memory threshold."""

    device: str
    free_bytes: int
    threshold_bytes: int


class MemoryRecovered(Event, frozen=True, kw_only=True, tag="memory.recovered"):
    """A device's free memory rose back above the recovery threshold."""

    device: str
    free_bytes: int
    threshold_bytes: int


DomainEvent = (
    UserSubmitted
    | CancelRequested
    | ClearRequested
    | SystemPromptSet
    | ServerInfo
    | ModelSelected
    | SessionOpened
    | ModelLoaded
    | ModelLoadFailed
    | ModelMemory
    | ReplyChunk
    | ReplyCompleted
    | ReplyFailed
    | ReplyCancelled
    | PromptRendered
    | VocabularyLoaded
    | VocabularyUnavailable
    | TemplateRendered
    | MemorySampled
    | MessageAdded
    | MessageUnanswered
    | ChatRequested
    | ContextReduced
    | ContextSizeChosen
    | ResizeRequested
    | ResizeDeclined
    | UsageTrend
    | ContextCleared
    | ClearFailed
    | SnapshotCreated
    | SnapshotFailed
    | RestoreRequested
    | SnapshotRestored
    | RestoreFailed
    | DeleteRequested
    | SnapshotsDeleted
    | UserNotified
    | MemorySourceChanged
    | UsageChanged
    | CalibrationChanged
    | CalibrationRestored
    | KvTypeLearned
    | TruncationDetected
    | SoftLimitHit
    | CompressRequested
    | CompressionStarted
    | CompressionCompleted
    | CompressionFailed
    | SnapshotRequested
    | HardLimitHit
    | CriticalLimitHit
    | LowMemory
    | MemoryRecovered
)
"""Every event ollm itself defines."""

AnyEvent = DomainEvent | RuntimeEvent
"""Everything a session's event log may hold."""


def is_input(event: object) -> bool:
    """Whether `event` carries the outside world in (replay re-publishes these)."""
    return isinstance(event, Input)
