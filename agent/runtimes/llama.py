"""GGUF models through llama-cpp-python. Imported only inside a worker process."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.errors import InvalidRequest
from agent.runtimes.base import GenerationStats


class LlamaRuntime:
    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=0,
            verbose=False,
        )

    def generate(
        self,
        prompt: str,
        max_tokens: int,
        temperature: float,
        cancelled: Callable[[], bool],
        stats: GenerationStats,
    ) -> Iterator[str]:
        llm = self._llm
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
        stats.prompt_tokens = len(tokens)
        if len(tokens) >= llm.n_ctx():
            raise InvalidRequest(
                f"prompt is {len(tokens)} tokens; the model was loaded with a context of "
                f"{llm.n_ctx()}"
            )
        max_tokens = min(max_tokens, llm.n_ctx() - len(tokens))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        eos = llm.token_eos()
        start = time.perf_counter()
        stats.finish_reason = "length"
        for token in llm.generate(tokens, temp=temperature, top_k=40, top_p=0.95, reset=True):
            now = time.perf_counter()
            if stats.completion_tokens == 0:
                stats.ttft_s = now - start
            if token == eos:
                stats.finish_reason = "stop"
                break
            stats.completion_tokens += 1
            stats.total_s = now - start
            piece = decoder.decode(llm.detokenize([token]))
            if piece:
                yield piece
            if cancelled():
                stats.finish_reason = "cancelled"
                break
            if stats.completion_tokens >= max_tokens:
                break
        stats.total_s = time.perf_counter() - start
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def verify_output(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The health gate's output check (``agent.runtimes.llama_check``)."""
        from agent.runtimes.llama_check import verify_output

        return verify_output(self._llm, prompt, max_tokens)

    def close(self) -> None:
        self._llm.close()
