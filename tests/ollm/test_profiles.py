from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollm.profiles import (
    ContextOption,
    ModelProfile,
    ProfileError,
    choose_context,
    dump_profiles,
    load_profiles,
)


def test_shipped_profiles_pass_ollama_context_size_through():
    profiles = load_profiles()
    llama = profiles.find("llama3.1:8b")
    assert llama is not None
    assert profiles.find("llama3.1:8b:latest") is None or profiles.find("llama3.1:8b") == llama
    choice = choose_context(llama, 16384)
    assert (choice.size, choice.num_ctx, choice.warning) == (16384, 13926, "")
    assert choose_context(llama, 4096).num_ctx == 3482
    assert choose_context(llama, 8192).num_ctx == 6963
    assert [o.num_ctx for o in choice.options] == [3482, 6963, 13926, 27853, 55706, 111411]


def test_every_shipped_option_has_an_ollama_context_size():
    for model in load_profiles().models.values():
        assert model.context_profiles, model.id
        for option in model.context_profiles:
            assert option.ollama_context_size is not None
            assert option.size <= model.max_context_window


def test_a_missing_ollama_context_size_falls_back_to_085_with_a_warning():
    profile = ModelProfile(id="x", context_profiles=(ContextOption(size=16384),))
    choice = choose_context(profile, 16384)
    assert choice.num_ctx == 13926
    assert "floor(0.85 × 16384) = 13926" in choice.warning


@pytest.mark.parametrize(
    ("size", "num_ctx"),
    # 0.85 × 4096 = 3481.6, 0.85 × 32769 = 27853.65, 0.85 × 30 = 25.5: round differs.
    [(4096, 3481), (32769, 27853), (30, 25)],
)
def test_the_fallback_floors_where_rounding_would_differ(size, num_ctx):
    profile = ModelProfile(id="x", context_profiles=(ContextOption(size=size),))
    choice = choose_context(profile, size)
    assert choice.num_ctx == num_ctx
    assert f"floor(0.85 × {size}) = {num_ctx}" in choice.warning


def test_a_size_between_options_takes_the_largest_that_is_not_larger():
    llama = load_profiles().find("llama3.1:8b")
    choice = choose_context(llama, 10000)
    assert (choice.size, choice.num_ctx) == (8192, 6963)
    assert "closest to the requested 10000" in choice.how


def test_the_models_own_maximum_and_the_users_cap_limit_the_options():
    qwen = load_profiles().find("qwen2.5:7b")
    assert choose_context(qwen, 131072).size == 32768
    assert choose_context(qwen, 32768, max_size=8192).num_ctx == 6963


def test_a_model_without_a_profile_gets_the_smaller_of_target_and_its_maximum():
    assert choose_context(None, 16384, model_max=8192).num_ctx == 8192
    assert choose_context(None, 16384, model_max=131072).num_ctx == 16384
    assert choose_context(None, 16384).num_ctx == 16384


def test_a_user_file_overrides_a_model_and_adds_others(tmp_path):
    path = tmp_path / "LLM_profiles.json"
    path.write_text(
        dump_profiles(
            [
                ModelProfile(
                    id="llama3.1:8b",
                    max_context_window=131072,
                    context_profiles=(ContextOption(size=16384, ollama_context_size=16000),),
                ),
                ModelProfile(id="mine:1b", context_profiles=(ContextOption(size=4096),)),
            ]
        )
    )
    profiles = load_profiles(path)
    assert choose_context(profiles.find("llama3.1:8b"), 16384).num_ctx == 16000
    assert profiles.find("mine:1b") is not None
    assert profiles.find("qwen2.5:7b") is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"models": [{"id": 5}]}', "does not follow the profile format"),
        ('{"models": [{"id": ""}]}', "a model has an empty id"),
        ('{"models": [{"id": "a", "context_profiles": [{"size": 0}]}]}', "a size below 1"),
    ],
)
def test_a_bad_user_file_is_one_sentence_naming_it(tmp_path, content, message):
    path = tmp_path / "LLM_profiles.json"
    path.write_text(content)
    with pytest.raises(ProfileError) as info:
        load_profiles(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "version",
                    "models",
                    "id",
                    "name",
                    "max_context_window",
                    "context_profiles",
                    "size",
                    "ollama_context_size",
                    "vram_estimate_gb",
                    "thinking",
                    "x",
                ]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(data=json_values, target=st.integers(1, 10**6))
def test_fuzzed_profile_files_load_or_fail_in_one_sentence(tmp_path_factory, data, target):
    path = tmp_path_factory.mktemp("p") / "LLM_profiles.json"
    path.write_text(json.dumps(data))
    try:
        profiles = load_profiles(path)
    except ProfileError as exc:
        assert "\n" not in str(exc)
        return
    for model in profiles.models.values():
        choice = choose_context(model, target)
        assert choice.num_ctx >= 1
