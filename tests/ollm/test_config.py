from __future__ import annotations

import pytest

from ollm.config import ConfigError, load_settings, normalise_host


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_specs(tmp_path):
    s = load_settings(env={})
    ctx = s.context
    assert (ctx.target_size, ctx.min_size, ctx.max_size, ctx.auto_size) == (16384, 2048, 0, True)
    assert (ctx.vram_buffer, ctx.kv_quantization) == (512, "q8_0")
    c = ctx.compression
    assert (c.enabled, c.threshold, c.strategy, c.preserve_recent, c.summary_max_tokens) == (
        True,
        0.75,
        "hybrid",
        4096,
        1024,
    )
    sn = ctx.snapshots
    assert (sn.enabled, sn.max_count, sn.auto_create, sn.auto_threshold) == (True, 5, True, 0.80)
    assert s.ollama.host == "http://127.0.0.1:11434"


def test_yaml_then_environment_then_flags(tmp_path):
    path = write(
        tmp_path,
        "context:\n  targetSize: 8192\n  kvQuantization: f16\n  compression:\n    strategy: truncate\n",
    )
    s = load_settings(path, env={})
    assert (s.context.target_size, s.context.kv_quantization) == (8192, "f16")
    assert s.context.compression.strategy == "truncate"
    env = {
        "OLLM_CONTEXT_SIZE": "4096",
        "OLLM_CONTEXT_AUTO": "false",
        "OLLM_CONTEXT_VRAM_BUFFER": "1024",
        "OLLM_KV_CACHE_TYPE": "q4_0",
        "OLLAMA_HOST": "gpu-box",
    }
    s = load_settings(path, env=env)
    assert s.context.target_size == 4096
    assert s.context.auto_size is False
    assert s.context.vram_buffer == 1024
    assert s.context.kv_quantization == "q4_0"
    assert s.ollama.host == "http://gpu-box:11434"
    s = load_settings(path, env=env, flags={("context", "targetSize"): 32768})
    assert s.context.target_size == 32768


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "context:\n  targetSize: lots\n",
            "context.targetSize = 'lots' is not allowed; it must be a whole number",
        ),
        (
            "context:\n  kvQuantization: q9_9\n",
            "context.kvQuantization = 'q9_9' is not allowed; use one of f16, q8_0, q4_0",
        ),
        (
            "context:\n  compression:\n    strategy: magic\n",
            "context.compression.strategy = 'magic' is not allowed; "
            "use one of summarize, truncate, hybrid",
        ),
        (
            "context:\n  compression:\n    threshold: 75\n",
            "context.compression.threshold = 75.0 is not allowed; "
            "it must be a fraction of num_ctx above 0 and at most 1",
        ),
        (
            "context:\n  targetSize: 100\n",
            "context.targetSize = 100 is not allowed; it must be at least 256",
        ),
        (
            "context:\n  maxSize: -1\n",
            "context.maxSize = -1 is not allowed; it must not be negative",
        ),
        ("context:\n  autosize: true\n", "unknown key context.autosize; check its spelling"),
        ("context: [1, 2]\n", "context = [1, 2] is not allowed; it must be a mapping of keys"),
        ("- just\n- a list\n", "must be a mapping of keys"),
        ("context:\n  targetSize: [\n", "is not valid YAML at line"),
        (
            "ollama:\n  host: 'ftp://box'\n",
            "ollama.host = 'ftp://box' is not allowed; use http:// or https://",
        ),
    ],
)
def test_a_bad_value_is_one_sentence_naming_key_value_and_rule(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    text_out = str(info.value)
    assert text_out.startswith(f"{path}: ")
    assert message in text_out
    assert "\n" not in text_out


def test_a_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(env={"OLLM_CONTEXT_SIZE": "huge"})
    assert str(info.value) == (
        "environment variable OLLM_CONTEXT_SIZE: context.targetSize = 'huge' is not allowed; "
        "it must be a whole number"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(env={"OLLM_CONTEXT_AUTO": "maybe"})
    assert "OLLM_CONTEXT_AUTO" in str(info.value)
    assert "true or false" in str(info.value)


def test_an_explicit_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("http://box:8080/", "http://box:8080"),
        ("http://box", "http://box:80"),  # a scheme without a port: the scheme's own
        ("https://ollama.example.org", "https://ollama.example.org:443"),
        ("ollama.com", "https://ollama.com:443"),
        ("[::1]:11435", "http://[::1]:11435"),
        ("::1", "http://[::1]:11434"),
        (":8080", "http://127.0.0.1:8080"),
        ('  "box:9000"  ', "http://box:9000"),
        ("'http://box:9000/proxy/ollama/'", "http://box:9000/proxy/ollama"),
        ("http://u:p@box:1", "http://u:p@box:1"),
    ],
)
def test_ollama_host_is_read_the_way_ollama_reads_it(given, expected):
    assert normalise_host(given) == expected


# Hostile config files, generated: tests/ollm/test_config_fuzz.py.
