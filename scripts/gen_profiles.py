"""Write ollm/data/LLM_profiles.json: context options for common Ollama models.

Usage: python scripts/gen_profiles.py

Per model: each context option's `size` (what the user picks), `ollama_context_size` (what
is sent as num_ctx: round(0.85 × size), the values of the profiles ollm replaces, 3482 for
4k and 13926 for 16k; ollm passes it through unchanged, and a user file can set any other
value), and a VRAM estimate: the weights plus the exact f16 KV cache of that num_ctx plus a
0.5 GiB compute allowance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ollm.memory import Architecture, ollama_kv_bytes

OUT = Path(__file__).resolve().parent.parent / "ollm" / "data" / "LLM_profiles.json"
GiB = 1024**3
COMPUTE_ALLOWANCE = 0.5 * GiB

# id, name, layers, kv heads, head dim, sliding window, trained context, weights GB, thinking
MODELS = [
    ("llama3.1:8b", "Llama 3.1 8B", "llama", 32, 8, 128, 0, 131072, 4.9, False),
    ("llama3.2:3b", "Llama 3.2 3B", "llama", 28, 8, 128, 0, 131072, 2.0, False),
    ("llama3.2:1b", "Llama 3.2 1B", "llama", 16, 8, 64, 0, 131072, 1.3, False),
    ("qwen2.5:7b", "Qwen 2.5 7B", "qwen2", 28, 4, 128, 0, 32768, 4.7, False),
    ("qwen2.5:14b", "Qwen 2.5 14B", "qwen2", 48, 8, 128, 0, 32768, 9.0, False),
    ("qwen2.5-coder:7b", "Qwen 2.5 Coder 7B", "qwen2", 28, 4, 128, 0, 32768, 4.7, False),
    ("qwen3:4b", "Qwen 3 4B", "qwen3", 36, 8, 128, 0, 40960, 2.5, True),
    ("qwen3:8b", "Qwen 3 8B", "qwen3", 36, 8, 128, 0, 40960, 5.2, True),
    ("mistral:7b", "Mistral 7B", "llama", 32, 8, 128, 0, 32768, 4.4, False),
    ("gemma2:9b", "Gemma 2 9B", "gemma2", 42, 8, 256, 4096, 8192, 5.4, False),
    ("gemma3:4b", "Gemma 3 4B", "gemma3", 34, 4, 256, 1024, 131072, 3.3, False),
    ("gemma3:12b", "Gemma 3 12B", "gemma3", 48, 8, 256, 1024, 131072, 8.1, False),
    ("gemma3:27b", "Gemma 3 27B", "gemma3", 62, 16, 128, 1024, 131072, 17.0, False),
]
SIZES = [4096, 8192, 16384, 32768, 65536, 131072]


def label(size: int) -> str:
    return f"{size // 1024}k"


def main() -> None:
    models = []
    for mid, name, arch, layers, kv, head, window, trained, weights_gb, thinking in MODELS:
        info = {
            "general.architecture": arch,
            f"{arch}.block_count": layers,
            f"{arch}.attention.head_count_kv": kv,
            f"{arch}.attention.key_length": head,
            f"{arch}.attention.value_length": head,
            f"{arch}.context_length": trained,
            f"{arch}.attention.sliding_window": window,
        }
        architecture = Architecture.from_model_info(info)
        options = []
        for size in (s for s in SIZES if s <= trained):
            num_ctx = round(0.85 * size)
            total = weights_gb * 1e9 + ollama_kv_bytes(architecture, num_ctx) + COMPUTE_ALLOWANCE
            options.append(
                {
                    "size": size,
                    "size_label": label(size),
                    "ollama_context_size": num_ctx,
                    "vram_estimate_gb": math.ceil(total / GiB * 10) / 10,
                }
            )
        models.append(
            {
                "id": mid,
                "name": name,
                "max_context_window": trained,
                "thinking": thinking,
                "context_profiles": options,
            }
        )
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"version": 1, "models": models}, indent=2) + "\n")
    print(f"wrote {OUT} ({len(models)} models)")


if __name__ == "__main__":
    main()
