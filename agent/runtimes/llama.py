"""GGUF models through llama-cpp-python. Imported only inside a worker process."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.errors import ContextLengthExceeded, NotForThisMachine, NotFound
from agent.lora import check_adapter_fits, read_adapter_header
from agent.offload import gpu_layers
from agent.runtimes.base import DEFAULT_TOP_P, GenerationRequest, GenerationStats
from agent.runtimes.chat import ChatTemplate
from agent.runtimes.stops import StopScanner

TOP_K = 40
RANDOM_SEED = 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: llama.cpp draws a random seed


class LlamaRuntime:
    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            # every layer on the GPU when this build has a GPU backend, by the test the probe
            # reports (agent.offload): what the controller predicts for the device
            n_gpu_layers=gpu_layers(),
            verbose=False,
        )
        self._chat: ChatTemplate | None = None
        # Per token id, what the vocabulary says: fixed for the model, so each is asked of
        # llama.cpp once instead of once per generated token (two ctypes calls a token).
        self._pieces: dict[int, bytes] = {}
        self._is_eog = self._end_of_generation()
        self._eog: dict[int, bool] = {}
        # LoRA adapters loaded on this base, by key (the adapter blob's sha256), and the one
        # the context applies now ("" = the base alone)
        self._adapters: dict[str, Any] = {}
        self._active_adapter = ""

    def chat_template(self) -> ChatTemplate:
        if self._chat is None:
            llm = self._llm
            self._chat = ChatTemplate(
                llm.metadata,
                bos_token=llm.detokenize([llm.token_bos()], special=True).decode(errors="replace"),
                eos_token=llm.detokenize([llm.token_eos()], special=True).decode(errors="replace"),
            )
        return self._chat

    def _end_of_generation(self) -> Callable[[int], bool]:
        """End-of-turn tokens too (``<|eot_id|>``, ``<|im_end|>``...), not only EOS."""
        import llama_cpp

        llm = self._llm
        vocab = getattr(getattr(llm, "_model", None), "vocab", None)
        is_eog = getattr(llama_cpp, "llama_vocab_is_eog", None)
        if vocab is not None and is_eog is not None:
            return lambda token: bool(is_eog(vocab, token))
        eos = llm.token_eos()
        return lambda token: token == eos

    # -- LoRA adapters --------------------------------------------------------------------
    def load_adapter(self, key: str, path: str) -> dict[str, Any]:
        """Load a GGUF LoRA adapter on top of this base (the base stays as it is); its
        header's architecture must be the base's (AdapterMismatch otherwise)."""
        import llama_cpp

        if key in self._adapters:
            return {"seconds": 0.0, "already": True}
        header = read_adapter_header(Path(path))
        check_adapter_fits(header, str(self._llm.metadata.get("general.architecture", "")))
        started = time.perf_counter()
        adapter = llama_cpp.llama_adapter_lora_init(self._llm._model.model, path.encode())
        if not adapter:
            raise NotForThisMachine(
                f"llama.cpp refused the adapter {Path(path).name} for this base (its tensors "
                "do not match the base's names or shapes)")
        self._adapters[key] = adapter
        return {"seconds": time.perf_counter() - started, "already": False,
                "alpha": header.alpha}

    def use_adapter(self, key: str, scale: float = 1.0) -> float:
        """Apply the loaded adapter ``key`` ("" = none) to the context: no reload, and the
        cached prompt state is dropped (it was computed with the other weights). Returns the
        seconds the switch took."""
        import ctypes

        import llama_cpp

        if key == self._active_adapter:
            return 0.0
        if key and key not in self._adapters:
            raise NotFound(f"adapter {key[:12]} is not loaded on this model")
        started = time.perf_counter()
        ctx = self._llm._ctx.ctx
        if key:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[key])
            scales = (ctypes.c_float * 1)(scale)
            rc = llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
        else:
            rc = llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        if rc != 0:
            raise NotForThisMachine(f"llama.cpp could not apply adapter {key[:12]} (code {rc})")
        # the cached prompt state (KV) was computed with the previous weights
        self._llm.reset()  # type: ignore[no-untyped-call]
        self._active_adapter = key
        return time.perf_counter() - started

    def drop_adapter(self, key: str) -> None:
        """Free a loaded adapter (taken off the context first if it is applied)."""
        import llama_cpp

        if key not in self._adapters:
            return
        if key == self._active_adapter:
            self.use_adapter("")
        llama_cpp.llama_adapter_lora_free(self._adapters.pop(key))

    def adapters(self) -> dict[str, Any]:
        return {"loaded": sorted(self._adapters), "active": self._active_adapter}

    def generate(
        self,
        request: GenerationRequest,
        cancelled: Callable[[], bool],
        stats: GenerationStats,
        started: Callable[[int], None] | None = None,
    ) -> Iterator[str]:
        """The text, piece by piece; ``started(prompt_tokens)`` once the prompt is accepted
        (every refusal raised), just before the prefill."""
        llm = self._llm
        stops = request.stop
        if request.adapter is not None:
            self.use_adapter(request.adapter)
        if request.messages:
            chat = self.chat_template().render(request.messages)
            # special=True: the template's control tokens (<|im_start|>...) are tokens, not text
            tokens = llm.tokenize(chat.text.encode("utf-8"), add_bos=chat.add_bos, special=True)
            stops = stops + chat.stops
        else:
            tokens = llm.tokenize(request.prompt.encode("utf-8"), add_bos=True)
        stats.prompt_tokens = len(tokens)
        n_ctx = llm.n_ctx()
        if len(tokens) >= n_ctx:
            raise ContextLengthExceeded(
                f"prompt is {len(tokens)} tokens; the model was loaded with a context of "
                f"{n_ctx}"
            )
        room = n_ctx - len(tokens)
        max_tokens = min(request.max_tokens, room) if request.max_tokens else room
        llm.set_seed(request.seed % RANDOM_SEED if request.seed is not None else RANDOM_SEED)
        top_p = DEFAULT_TOP_P if request.top_p is None else request.top_p
        pieces, eog = self._pieces, self._eog
        scanner = StopScanner(stops)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if started is not None:
            started(len(tokens))
        start = time.perf_counter()
        stats.finish_reason = "length"
        for token in llm.generate(tokens, temp=request.temperature, top_k=TOP_K, top_p=top_p,
                                  reset=True):
            now = time.perf_counter()
            if stats.completion_tokens == 0:
                stats.ttft_s = now - start
            end = eog.get(token)
            if end is None:
                end = eog[token] = self._is_eog(token)
            if end:
                stats.finish_reason = "stop"
                break
            stats.completion_tokens += 1
            stats.total_s = now - start
            raw = pieces.get(token)
            if raw is None:
                raw = pieces[token] = llm.detokenize([token])
            piece = decoder.decode(raw)
            if piece:
                piece = scanner.feed(piece)
                if piece:
                    yield piece
                if scanner.stopped:
                    stats.finish_reason = "stop"
                    break
            if cancelled():
                stats.finish_reason = "cancelled"
                break
            if stats.completion_tokens >= max_tokens:
                break
        stats.total_s = time.perf_counter() - start
        if not scanner.stopped:
            tail = scanner.feed(decoder.decode(b"", final=True))
            tail += "" if scanner.stopped else scanner.flush()
            if scanner.stopped:
                stats.finish_reason = "stop"
            if tail:
                yield tail

    def verify_output(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The health gate's output check (``agent.runtimes.llama_check``)."""
        from agent.runtimes.llama_check import verify_output

        return verify_output(self._llm, prompt, max_tokens)

    def close(self) -> None:
        self._llm.close()
