"""What the Ollama server runs, read from the environment it was started with."""

from __future__ import annotations

import pytest

from ollm.live._server_env import read_server_setup
from ollm.memory import Architecture
from ollm.server_setup import ServerSetup, from_environment, preference_note, unit_environment
from tests.fakes.ollama_server import FakeModel

LOCAL = "http://127.0.0.1:11434"


@pytest.mark.parametrize(
    ("env", "kv", "flash", "parallel"),
    [
        ({}, "f16", "auto", 1),
        ({"OLLAMA_KV_CACHE_TYPE": "q8_0"}, "q8_0", "auto", 1),
        ({"OLLAMA_KV_CACHE_TYPE": " 'q4_0' ", "OLLAMA_FLASH_ATTENTION": "1"}, "q4_0", "on", 1),
        ({"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_FLASH_ATTENTION": "false"}, "f16", "off", 1),
        ({"OLLAMA_FLASH_ATTENTION": "yes please"}, "f16", "on", 1),  # ParseBool fails: true
        ({"OLLAMA_KV_CACHE_TYPE": "q3_k"}, "f16", "auto", 1),
        ({"OLLAMA_NUM_PARALLEL": "4"}, "f16", "auto", 4),
        ({"OLLAMA_NUM_PARALLEL": "many"}, "f16", "auto", 1),
    ],
)
def test_ollamas_own_rules_for_its_environment(env, kv, flash, parallel):
    setup = from_environment(env, "test")
    assert (setup.kv_type, setup.flash_attention, setup.parallel) == (kv, flash, parallel)


def test_a_systemd_unit_and_its_drop_ins_are_read_in_order(tmp_path):
    unit = tmp_path / "ollama.service"
    unit.write_text('[Service]\nEnvironment="OLLAMA_KV_CACHE_TYPE=q4_0" "OLLAMA_NUM_PARALLEL=2"\n')
    drop = tmp_path / "ollama.service.d"
    drop.mkdir()
    (drop / "override.conf").write_text("[Service]\nEnvironment=OLLAMA_KV_CACHE_TYPE=q8_0\n")
    setup = read_server_setup(LOCAL, proc=tmp_path / "no-proc", units=(unit,))
    assert (setup.kv_type, setup.parallel) == ("q8_0", 2), "the drop-in wins"
    assert str(unit) in setup.source and "override.conf" in setup.source
    assert unit_environment("Environment=A=1 B='two words'") == {"A": "1", "B": "two words"}


def test_the_running_servers_own_environment_comes_first(tmp_path):
    proc = tmp_path / "proc"
    (proc / "41").mkdir(parents=True)
    (proc / "41" / "cmdline").write_bytes(b"/usr/bin/ollama\0serve\0")
    (proc / "41" / "environ").write_bytes(b"HOME=/root\0OLLAMA_KV_CACHE_TYPE=q8_0\0")
    (proc / "7").mkdir()
    (proc / "7" / "cmdline").write_bytes(b"/usr/bin/ollama\0run\0llama3\0")  # a client
    setup = read_server_setup(LOCAL, proc=proc, units=(tmp_path / "none.service",))
    assert setup.kv_type == "q8_0" and "pid 41" in setup.source


def test_without_anything_to_read_or_for_a_remote_server_it_is_ollamas_default(tmp_path):
    nothing = read_server_setup(LOCAL, proc=tmp_path, units=(tmp_path / "x.service",))
    assert nothing == ServerSetup()
    remote = read_server_setup("http://gpu-box:11434", proc=tmp_path, units=())
    assert remote.kv_type == "f16" and "gpu-box" in remote.source


def test_the_preferred_type_says_what_it_would_gain():
    arch = Architecture.from_model_info(FakeModel("m").model_info())
    note = preference_note(arch, "f16", "auto", "q8_0", "a unit")
    assert "the server runs an f16 KV cache (from a unit), not the q8_0 of kvQuantization" in note
    assert "OLLAMA_KV_CACHE_TYPE=q8_0 and OLLAMA_FLASH_ATTENTION=1" in note
    assert "1.9× the context would fit" in note
    on = preference_note(arch, "q8_0", "on", "q4_0")
    assert "a q8_0 KV cache, not the q4_0" in on and "FLASH" not in on, "flash attention is on"
    assert "1.9× the context" in on
    back = preference_note(arch, "q8_0", "on", "f16")
    assert "0.5× the context" in back and "FLASH" not in back, "f16 needs no flash attention"
    assert preference_note(arch, "q8_0", "on", "q8_0") == ""
    assert preference_note(arch, "q8_0", "on", "") == "", "no preference known (an old journal)"
