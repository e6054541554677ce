"""Quality loss of llama.cpp file types versus full precision.

Mean KL divergence on Wikitext-2, LLaMA-3-8B scoreboard in llama.cpp's
``tools/perplexity/README.md`` (revision f364eb6f), quoted in shared/facts.md §1.4. Small models
degrade more than 8B at the same bits, so these are an optimistic bound; a catalog variant may
state its own measured figure.
"""

from __future__ import annotations

SOURCE = "llama.cpp tools/perplexity/README.md, LLaMA-3-8B KLD scoreboard (f364eb6f)"

MEAN_KLD = {
    "F32": 0.0,
    "BF16": 0.000025,
    "F16": 0.000551,
    "Q8_0": 0.001355,
    "Q6_K": 0.005452,
    "Q5_K_M": 0.010762,
    "Q4_K_M": 0.031273,
    "Q4_K_S": 0.043136,
    "Q4_0": 0.071940,
    "Q3_K_M": 0.101913,
    "Q2_K": 0.445132,
}

# Whole-file bits per weight, Llama-3.1-8B (llama.cpp tools/quantize/README.md, 311c2c9f).
BITS_PER_WEIGHT = {
    "F16": 16.0005, "Q8_0": 8.5008, "Q6_K": 6.5633, "Q5_K_M": 5.7036, "Q4_K_M": 4.8944,
    "Q4_K_S": 4.6672, "Q3_K_M": 3.91, "Q2_K": 3.1593, "Q4_0": 4.5,
}


def band(kld: float) -> str:
    """Band used by third-party fit tools, anchored on the same scoreboard."""
    if kld < 0.01:
        return "negligible"
    if kld < 0.05:
        return "small"
    if kld < 0.15:
        return "moderate"
    if kld < 0.5:
        return "large"
    return "severe"
