"""Typed settings: the YAML file < `OLLM_*`/`OLLAMA_HOST` environment < command-line flags.

Keys are camelCase in YAML, snake_case in code. Every error names the key, the value and what
is allowed, in one sentence (`ConfigError`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec
from blake3 import blake3

from .model_options import OPTIONS_KEY, OptionError, checked
from .paths import default_config_path

KeepAlive = str | int | float
"""How long Ollama keeps the model loaded after a request (`keep_alive`)."""
GO_DURATION = re.compile(r"[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)")
"""What Go's `time.ParseDuration` accepts, as Ollama reads a `keep_alive` string."""
KvType = Literal["f16", "q8_0", "q4_0"]
Strategy = Literal["summarize", "truncate", "hybrid"]
DEFAULT_HOST = "http://127.0.0.1:11434"


class ConfigError(ValueError):
    """A configuration value is wrong; `str()` is one sentence for the user."""


class _Section(
    msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True
):
    pass


class CompressionSettings(_Section, frozen=True, kw_only=True):
    enabled: bool = True
    threshold: float = 0.75
    strategy: Strategy = "hybrid"
    preserve_recent: int = 4096
    summary_max_tokens: int = 1024


class SnapshotSettings(_Section, frozen=True, kw_only=True):
    enabled: bool = True
    max_count: int = 5
    auto_create: bool = True
    auto_threshold: float = 0.80
    max_age_days: float = 0
    """Also delete snapshots older than this (0: keep them whatever their age)."""


class GuardSettings(_Section, frozen=True, kw_only=True):
    hard_limit: float = 0.90
    critical: float = 0.95
    low_memory_mb: int = 512
    """Free memory below this on any device is `LowMemory`."""
    recover_memory_mb: int = 1024
    """…and above this again is `MemoryRecovered` (the gap keeps the events from flapping)."""
    poll_busy_seconds: float = 5.0
    """How often memory is sampled while a reply is generating."""
    poll_idle_seconds: float = 30.0
    """…and when idle."""


class ContextSettings(_Section, frozen=True, kw_only=True):
    target_size: int = 16384
    min_size: int = 2048
    max_size: int = 0
    auto_size: bool = True
    vram_buffer: int = 512
    kv_quantization: KvType = "q8_0"
    compression: CompressionSettings = CompressionSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    guard: GuardSettings = GuardSettings()


class OllamaSettings(_Section, frozen=True, kw_only=True):
    host: str = DEFAULT_HOST
    keep_alive: KeepAlive = "5m"
    """As Ollama reads `keep_alive`: seconds (negative: forever, 0: unload at once) or a Go
    duration ("5m", "1h30m", "-1m")."""
    """How long Ollama keeps the model loaded after a request (Ollama's duration syntax)."""
    timeout: float = 300.0
    """Seconds to wait for the server to start answering or to send the next chunk."""
    think: bool = True
    """Let thinking models think (only sent to models with the `thinking` capability)."""
    max_reply_tokens: int = 2048
    """`num_predict` for a chat reply (always bounded by the room left in the context)."""
    options: dict[str, Any] = {}
    """Model options sent with every chat request (`-o KEY VALUE`): temperature, top_p,
    seed, stop, … (`ollm.model_options`); runner options are refused."""


class Settings(_Section, frozen=True, kw_only=True):
    model: str = ""
    """The model to chat with; empty = ask Ollama which ones are installed and say so."""
    system_prompt: str = ""
    context: ContextSettings = ContextSettings()
    ollama: OllamaSettings = OllamaSettings()


# --- loading ------------------------------------------------------------------------------

_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "OLLM_MODEL": ("model",),
    "OLLM_CONTEXT_SIZE": ("context", "targetSize"),
    "OLLM_CONTEXT_AUTO": ("context", "autoSize"),
    "OLLM_CONTEXT_VRAM_BUFFER": ("context", "vramBuffer"),
    "OLLM_KV_CACHE_TYPE": ("context", "kvQuantization"),
    "OLLAMA_HOST": ("ollama", "host"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[tuple[str, ...], Any] | None = None,
) -> Settings:
    """Settings from the YAML file (if it exists), then the environment, then flags.

    Args:
        path: the config file; default: `config.yaml` in the user config directory. A path
            given explicitly must exist.
        env: the environment (default `os.environ`).
        flags: overrides by camelCase key path, e.g. `{("context", "targetSize"): 8192}`.

    Raises:
        ConfigError: one sentence naming the source, the key, the value and what is allowed.
    """
    return explain_settings(path, env, flags).settings


@dataclass(frozen=True)
class Explained:
    """The settings in force, and where each value came from (`ollm config`)."""

    settings: Settings
    path: Path
    """The config file read (or that would be read)."""
    exists: bool
    sources: dict[tuple[str, ...], str]
    """Key → "environment variable X", "command-line flag --x" or the file's path; a key
    that is absent has its default."""

    def rows(self) -> list[tuple[str, Any, str]]:
        """(dotted key, value, source) for every key, in the order of the sections."""
        found: list[tuple[str, Any, str]] = []

        def walk(node: Any, key: tuple[str, ...]) -> None:
            if isinstance(node, dict) and (node or len(key) < 2):
                for name, value in node.items():
                    walk(value, (*key, name))
                return
            found.append((".".join(key), node, self.sources.get(key, "default")))

        walk(settings_to_dict(self.settings), ())
        return found


def explain_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[tuple[str, ...], Any] | None = None,
) -> Explained:
    """`load_settings`, keeping where each value came from.

    Raises:
        ConfigError: as `load_settings`.
    """
    explicit = path is not None
    path = path or default_config_path()
    data: dict[str, Any] = {}
    source = str(path)
    exists = path.exists()
    if exists:
        data = _read_yaml(path)
    elif explicit:
        raise ConfigError(f"{path}: no such config file; check the path given to --config")
    sources: dict[tuple[str, ...], str] = dict.fromkeys(_leaves(data, ()), source)
    for name, key in _ENV_KEYS.items():
        value = (os.environ if env is None else env).get(name)
        if value is not None and value != "":
            _put(data, key, _env_value(key, value))
            sources[key] = f"environment variable {name}"
    for key, value in (flags or {}).items():
        _put(data, key, value)
        sources[key] = f"command-line flag {_flag_name(key)}"
    _text_only(data, (), source, sources)
    settings = _convert(data, source, sources)
    settings = _normalised(_checked(settings, source, sources))
    return Explained(settings, path, exists, sources)


def _leaves(node: Any, key: tuple[str, ...]) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        return [leaf for name, value in node.items() for leaf in _leaves(value, (*key, str(name)))]
    return [key] if key else []


def _text_only(
    node: Any, key: tuple[str, ...], source: str, sources: dict[tuple[str, ...], str]
) -> None:
    """Refuse a lone surrogate (YAML's `"\\ud800"`, or undecodable bytes in the
    environment): it is not text, and nothing can encode it."""
    if isinstance(node, dict):
        for name, value in node.items():
            _text_only(name, key, source, sources)
            _text_only(value, (*key, str(name)), source, sources)
    elif isinstance(node, list):
        for value in node:
            _text_only(value, key, source, sources)
    elif isinstance(node, str) and _SURROGATE.search(node):
        where = sources.get(key, source)
        name = ".".join(key) or "(top level)"
        raise ConfigError(
            f"{where}: {name if name.isprintable() else _echo(name)} = {_echo(node)} is not "
            "allowed; it "
            "holds a lone surrogate (an escape like \\ud800), which is not text"
        )


def _flag_name(key: tuple[str, ...]) -> str:
    if key[:2] == OPTIONS_KEY:
        return f"-o {key[-1]}"
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", key[-1]).lower()


CONFIG_MAX_BYTES = 1 << 20
"""A config file is a few hundred bytes; one past a MiB is not a config file."""
CONFIG_MAX_DEPTH = 16
"""The deepest key is three levels down; nesting past this is refused, not recursed into."""


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # only when a config file exists: keeps ~10 ms off every other start

    try:
        with path.open("rb") as file:
            data = file.read(CONFIG_MAX_BYTES + 1)
        if len(data) > CONFIG_MAX_BYTES:
            raise ConfigError(f"{path}: is over 1 MiB, too large for a config file")
        raw = yaml.load(data.decode("utf-8"), Loader=_bounded_loader())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: is not UTF-8 text; save it as UTF-8") from exc
    except _Refused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: is nested too deeply for a config file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: is not valid YAML{where}; fix the syntax there") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: must be a mapping of keys (like `context:`), not a list or text"
        )
    return raw


_SURROGATE = re.compile("[\ud800-\udfff]")
ECHO_MAX = 60
"""A value or key quoted back in an error is cut to this many characters."""


def _echo(value: object) -> str:
    """A value as an error quotes it: its repr, cut to `ECHO_MAX`."""
    text = repr(value)
    return text if len(text) <= ECHO_MAX else text[: ECHO_MAX - 1] + "…"


class _Refused(Exception):
    """The YAML holds something a config file never needs (`str()`: what, and where)."""


def _bounded_loader() -> Any:
    """PyYAML's safe loader, refusing aliases (an alias bomb expands a few lines into
    gigabytes) and nesting past `CONFIG_MAX_DEPTH`, before anything is built."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise _Refused(f"uses a YAML alias at line {line}; write the value out instead")
            self.depth += 1
            try:
                if self.depth > CONFIG_MAX_DEPTH:
                    line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                    raise _Refused(f"is nested too deeply at line {line} for a config file")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def _env_value(key: tuple[str, ...], value: str) -> Any:
    if key[-1] == "autoSize":
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return value
    if key[-1] in ("targetSize", "vramBuffer"):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def _put(data: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    node = data
    for part in key[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[key[-1]] = value


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


_EXPECTED = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "object": "a mapping of keys",
}


def _convert(data: dict[str, Any], source: str, sources: dict[tuple[str, ...], str]) -> Settings:
    try:
        return msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), data, source, sources) from None


def _explain(
    text: str, data: dict[str, Any], source: str, sources: dict[tuple[str, ...], str]
) -> ConfigError:
    match = re.search(r"- at `\$((?:\.[A-Za-z_]\w*)*)`$", text)
    path = match.group(1).lstrip(".").split(".") if match and match.group(1) else []
    unknown = re.match(r"Object contains unknown field `([^`]+)`", text)
    if unknown:
        name = ".".join([*path, unknown.group(1)])
        key = name if name.isprintable() else _echo(name)
        return ConfigError(
            f"{source}: unknown key {key}; check its spelling; `ollm config` lists every key"
        )
    key = ".".join(path) or "(top level)"
    where = sources.get(tuple(path), source)
    value = _lookup(data, path)
    enum = re.match(r"Invalid enum value (.*) - at", text)
    if enum:
        allowed = _allowed(path)
        return ConfigError(f"{where}: {key} = {_echo(value)} is not allowed; use one of {allowed}")
    expected = re.match(r"Expected `([^`]+)`", text)
    if expected:
        names = [n.strip() for n in expected.group(1).split("|")]
        want = " or ".join(_EXPECTED.get(n, n) for n in names)
        return ConfigError(f"{where}: {key} = {_echo(value)} is not allowed; it must be {want}")
    return ConfigError(f"{where}: {key} = {_echo(value)} is not allowed ({text})")


def _allowed(path: list[str]) -> str:
    leaf = path[-1] if path else ""
    options = {"kvQuantization": get_args(KvType), "strategy": get_args(Strategy)}.get(leaf, ())
    return ", ".join(options) if options else "a valid value"


def _checked(settings: Settings, source: str, sources: dict[tuple[str, ...], str]) -> Settings:
    ctx = settings.context

    def fail(key: tuple[str, ...], value: object, rule: str) -> ConfigError:
        where = sources.get(key, source)
        return ConfigError(f"{where}: {'.'.join(key)} = {_echo(value)} is not allowed; {rule}")

    fractions: tuple[tuple[tuple[str, ...], float], ...] = (
        (("context", "compression", "threshold"), ctx.compression.threshold),
        (("context", "snapshots", "autoThreshold"), ctx.snapshots.auto_threshold),
        (("context", "guard", "hardLimit"), ctx.guard.hard_limit),
        (("context", "guard", "critical"), ctx.guard.critical),
    )
    for key, value in fractions:
        if not (math.isfinite(value) and 0 < value <= 1):
            raise fail(key, value, "it must be a fraction of num_ctx above 0 and at most 1")
    positive: tuple[tuple[tuple[str, ...], int, int], ...] = (
        (("context", "targetSize"), ctx.target_size, 256),
        (("context", "minSize"), ctx.min_size, 256),
        (("context", "compression", "summaryMaxTokens"), ctx.compression.summary_max_tokens, 16),
        (("context", "snapshots", "maxCount"), ctx.snapshots.max_count, 1),
        (("ollama", "maxReplyTokens"), settings.ollama.max_reply_tokens, 1),
    )
    for key, number, least in positive:
        if number < least:
            raise fail(key, number, f"it must be at least {least}")
    non_negative: tuple[tuple[tuple[str, ...], int], ...] = (
        (("context", "maxSize"), ctx.max_size),
        (("context", "vramBuffer"), ctx.vram_buffer),
        (("context", "compression", "preserveRecent"), ctx.compression.preserve_recent),
        (("context", "guard", "lowMemoryMb"), ctx.guard.low_memory_mb),
        (("context", "guard", "recoverMemoryMb"), ctx.guard.recover_memory_mb),
    )
    for key, number in non_negative:
        if number < 0:
            raise fail(key, number, "it must not be negative")
    if ctx.max_size and ctx.max_size < ctx.min_size:
        raise fail(
            ("context", "maxSize"),
            ctx.max_size,
            f"it must be 0 or at least minSize ({ctx.min_size})",
        )
    if ctx.guard.recover_memory_mb < ctx.guard.low_memory_mb:
        raise fail(
            ("context", "guard", "recoverMemoryMb"),
            ctx.guard.recover_memory_mb,
            f"it must be at least lowMemoryMb ({ctx.guard.low_memory_mb})",
        )
    for key, seconds in (
        (("context", "guard", "pollBusySeconds"), ctx.guard.poll_busy_seconds),
        (("context", "guard", "pollIdleSeconds"), ctx.guard.poll_idle_seconds),
    ):
        if not (math.isfinite(seconds) and 0.5 <= seconds <= 3600):
            raise fail(key, seconds, "it must be a number of seconds from 0.5 to 3600")
    keep = settings.ollama.keep_alive
    if isinstance(keep, str) and not GO_DURATION.fullmatch(keep.strip()):
        raise fail(
            ("ollama", "keepAlive"),
            keep,
            "it must be seconds (like 300, or -1 to keep the model loaded, 0 to unload it at "
            'once) or a duration (like "5m", "1h30m")',
        )
    if isinstance(keep, float) and not math.isfinite(keep):
        raise fail(("ollama", "keepAlive"), keep, "it must be a finite number of seconds")
    timeout = settings.ollama.timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise fail(("ollama", "timeout"), timeout, "it must be a number of seconds above 0")
    try:
        normalise_host(settings.ollama.host)
    except ValueError as exc:
        raise fail(("ollama", "host"), shown_host(settings.ollama.host), str(exc)) from None
    options: dict[str, Any] = {}
    for name, value in settings.ollama.options.items():
        try:
            options[name] = checked(name, value)
        except OptionError as exc:
            shown = name if name.isprintable() and len(name) <= ECHO_MAX else _echo(name)
            raise fail((*OPTIONS_KEY, shown), value, str(exc)) from None
    return msgspec.structs.replace(
        settings, ollama=msgspec.structs.replace(settings.ollama, options=options)
    )


def normalise_host(host: str) -> str:
    """`OLLAMA_HOST` read as Ollama's own client reads it (`envconfig.Host`): spaces and
    quotes trimmed; no scheme means http (and `ollama.com` means https://ollama.com:443);
    without a port, 11434 when no scheme was given, else the scheme's own (80, 443); a bare
    IP (`::1`) is a host; `:PORT` is this machine; a path is kept (the API lives under it).

    Raises:
        ValueError: the text cannot be a host.
    """
    text = host.strip().strip("\"'")
    if not text:
        raise ValueError("it must be a host such as http://127.0.0.1:11434")
    scheme, found, rest = text.partition("://")
    default_port = "11434"
    if not found:
        scheme, rest = "http", text
        if text == "ollama.com":
            scheme, rest = "https", "ollama.com:443"
    elif scheme in ("http", "https"):
        default_port = "80" if scheme == "http" else "443"
    else:
        raise ValueError("use http:// or https://")
    hostport, _, path = rest.partition("/")
    credentials, _, hostport = hostport.rpartition("@")
    name, port = _split_host_port(hostport, default_port)
    if not re.fullmatch(r"[A-Za-z0-9._-]*|[0-9a-fA-F:.]+", name) or not port.isdigit():
        raise ValueError("it must be a host such as http://127.0.0.1:11434")
    if not 0 < int(port) < 65536:
        raise ValueError("the port must be between 1 and 65535")
    if name in ("", "0.0.0.0"):
        name = "127.0.0.1"
    shown = f"[{name}]" if ":" in name else name
    login = f"{credentials}@" if credentials else ""
    path = path.rstrip("/")
    return f"{scheme}://{login}{shown}:{port}" + (f"/{path}" if path else "")


def _split_host_port(text: str, default_port: str) -> tuple[str, str]:
    """Go's `net.SplitHostPort`, falling back as Ollama does: a bare IP or name gets the
    default port."""
    if text.startswith("["):
        inside, _, after = text[1:].partition("]")
        if after.startswith(":"):
            return inside, after[1:]
        return inside, default_port
    if text.count(":") == 1:
        name, _, port = text.partition(":")
        return name, port
    return text, default_port


def shown_host(host: str) -> str:
    """`host` as it may be printed or recorded: a user name and password in it (for a
    proxy in front of Ollama) become `***`."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/@]*@", r"\1***@", host.strip())


def _normalised(settings: Settings) -> Settings:
    host = normalise_host(settings.ollama.host)
    if host == settings.ollama.host:
        return settings
    return msgspec.structs.replace(
        settings, ollama=msgspec.structs.replace(settings.ollama, host=host)
    )


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    return msgspec.to_builtins(settings)  # type: ignore[no-any-return]


def settings_from_dict(data: dict[str, Any]) -> Settings:
    return msgspec.convert(data, Settings)


def digest(data: dict[str, Any]) -> str:
    """A stable short digest of a configuration (key order does not matter)."""
    canonical = msgspec.json.encode(data, order="sorted")
    return blake3(canonical).hexdigest(length=8)
